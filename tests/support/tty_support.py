"""Run a command with stderr on a pseudo-terminal (80x24), as a person at a terminal would see it."""

from __future__ import annotations

import os
import select
import struct
import subprocess
from collections.abc import Sequence


def run_with_tty_stderr(args: Sequence[str], *, env: dict[str, str] | None = None,
                        timeout: float = 300) -> tuple[int, str, str]:
    """``(returncode, stdout, what the terminal showed on stderr)``; stdout is a pipe."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # tqdm draws nothing at 0 columns
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    shown = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                shown.append(data)
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=timeout)[0]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out.decode(), b"".join(shown).decode(errors="replace")

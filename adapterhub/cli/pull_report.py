"""What ``adapterhub pull`` prints, in one place for the click command and the start-up fast path.

No click here: :mod:`.warm_pull` prints a warm pull's report before the CLI framework is imported, and it
must print exactly what the command prints.
"""

from __future__ import annotations

import json
from typing import Any


def json_text(data: Any) -> str:
    """The JSON every ``--json`` option prints (indented, Unicode kept, keys in the order given)."""
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False)


def human_size(n: int) -> str:
    """``n`` bytes as a short human-readable size (B, KiB, MiB, GiB)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def how_pulled(result: Any) -> str:
    """What a pull did and checked, truthfully: "verified" only when every file was hashed now."""
    if result.downloaded:
        return f"downloaded {human_size(result.downloaded)}, verified"
    if result.fully_hashed:
        return "cached, verified"
    trusted = len(result.files) - result.hashed
    return (f"cached; {result.hashed} of {len(result.files)} file(s) re-hashed, {trusted} unchanged since "
            "verified (`adapterhub verify` re-hashes all)")


def pull_lines(result: Any, *, signed: bool) -> list[str]:
    """The text report of a :class:`~adapterhub.store.PulledAdapter`: its dependencies, then itself.
    ``signed``: a signature was required (trusted keys or index signers), and so was verified."""
    lines = [f"{dep.name} {dep.version}  {dep.path}  (dependency)" for dep in result.dependencies]
    lines.append(f"{result.name} {result.version}  {result.path}  ({how_pulled(result)}"
                 f"{', signature verified' if signed else ''})")
    return lines

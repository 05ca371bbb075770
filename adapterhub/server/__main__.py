"""``python -m adapterhub.server --root DIR [--host 127.0.0.1] [--port 8080] [--token-file F]``.

Tokens come from a file (one per line) or the ``ADAPTERHUB_SERVER_TOKENS`` environment variable
(comma-separated), never from the command line, where other users of the machine could read them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .app import HubServer

TOKENS_ENV = "ADAPTERHUB_SERVER_TOKENS"


def _read_tokens(token_file: Path | None) -> list[str]:
    tokens = [t.strip() for t in os.environ.get(TOKENS_ENV, "").split(",") if t.strip()]
    if token_file is not None:
        lines = token_file.read_text("utf-8").splitlines()
        tokens += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return tokens


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adapterhub.server",
        description="Serve Hub-compatible model repositories from a directory.",
    )
    parser.add_argument("--root", type=Path, required=True, help="storage directory (created if missing)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, local only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (0 picks a free one; default: 8080)")
    parser.add_argument(
        "--token-file", type=Path, help=f"file with accepted write tokens; also ${TOKENS_ENV}"
    )
    parser.add_argument(
        "--public-url", help="base URL clients reach this server at (default: from Host header)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s"
    )
    tokens = _read_tokens(args.token_file)
    server = HubServer(args.root, host=args.host, port=args.port, tokens=tokens, public_url=args.public_url)
    auth = f"{len(tokens)} write token(s)" if tokens else "no auth (anyone who can connect may write)"
    print(
        f"adapterhub server: {server.endpoint} serving {server.storage.root} ({auth})",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

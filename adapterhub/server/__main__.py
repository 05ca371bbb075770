"""``python -m adapterhub.server --root DIR [--host 127.0.0.1] [--port 8080] [--token-file F]``.

Tokens come from a JSON file (see ``adapterhub.server.auth``), never from the command line, where
other users of the machine could read them. Without a token file the server is read-only; writes
without a token need the explicit ``--allow-anonymous-writes``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from adapterhub.errors import AdapterHubError

from .app import HubServer
from .auth import load_token_file

OLD_TOKENS_ENV = "ADAPTERHUB_SERVER_TOKENS"


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
        "--token-file",
        type=Path,
        help='JSON file of tokens: {"tokens": [{"token", "user", "write": [namespaces], "read": [...], "admin"}]}',
    )
    parser.add_argument(
        "--allow-anonymous-writes",
        action="store_true",
        help="let requests without a token create repos and commit anywhere (trusted networks only)",
    )
    parser.add_argument(
        "--public-url", help="base URL clients reach this server at (default: from Host header)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def _describe(tokens: int, anonymous_writes: bool) -> str:
    who = f"{tokens} token(s)" if tokens else "no tokens"
    if anonymous_writes:
        return f"{who}; ANYONE WHO CAN CONNECT MAY WRITE (--allow-anonymous-writes)"
    return f"{who}; writes need a token" if tokens else "read-only: no tokens, nobody can write"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s"
    )
    if os.environ.get(OLD_TOKENS_ENV):
        print(f"adapterhub server: {OLD_TOKENS_ENV} is no longer read: a token needs the namespaces it may "
              "write; list tokens in a --token-file", file=sys.stderr)
        return 2
    grants = ()
    if args.token_file is not None:
        try:
            grants = load_token_file(args.token_file)
        except AdapterHubError as exc:
            print(f"adapterhub server: {exc}", file=sys.stderr)
            return 2
        with contextlib.suppress(OSError):
            if args.token_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                print(f"adapterhub server: warning: {args.token_file} is readable by other users; "
                      f"chmod 600 it", file=sys.stderr)
    server = HubServer(
        args.root,
        host=args.host,
        port=args.port,
        tokens=grants,
        allow_anonymous_writes=args.allow_anonymous_writes,
        public_url=args.public_url,
    )
    print(
        f"adapterhub server: {server.endpoint} serving {server.storage.root} "
        f"({_describe(len(grants), args.allow_anonymous_writes)})",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

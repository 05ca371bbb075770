"""``adapterhub pull`` of something already cached, answered before the CLI framework is imported.

A warm pull is the command run most often (scripts call it before every job), and importing click with
what it imports (``inspect``, ``uuid``, ``datetime``) costs about a third of the whole process. So
:func:`adapterhub.cli.main` first offers its arguments to :func:`answer_warm_pull`, which takes only the
plain forms it understands completely: ``pull REQUIREMENT`` with any of ``-q``/``--quiet``, ``--json``,
``--no-deps``, ``--offline`` and ``--index LOCATION``, and no trust settings in the environment. It answers
only when :func:`adapterhub.store.pull_cached` does (a local index, a Hub reference pinned to a commit,
everything cached and still the verified bytes). Everything else returns None and the click command runs:
other options, help, a cache miss, any error (reported there, once, in the command's words). The report is
:mod:`.pull_report`'s, the same text the command prints.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .. import settings

FLAGS = {"-q": "quiet", "--quiet": "quiet", "--json": "json", "--no-deps": "no_deps", "--offline": "offline"}
"""The pull options this path understands, and what each sets."""



class PullArguments:
    """The parsed plain form of ``pull`` (see the module docstring)."""

    def __init__(self, requirement: str, index: str | None, flags: set[str]) -> None:
        self.requirement = requirement
        self.index = index
        self.flags = flags


def parse_plain_pull(argv: Sequence[str]) -> PullArguments | None:
    """``argv`` as a plain ``pull``, or None for anything this path does not take."""
    if not argv or argv[0] != "pull" or settings.trust_variables_set():  # the command validates those
        return None
    requirement: str | None = None
    index: str | None = None
    flags: set[str] = set()
    rest = list(argv[1:])
    while rest:
        token = rest.pop(0)
        if token in FLAGS:
            flags.add(FLAGS[token])
        elif token == "--index" and rest and not rest[0].startswith("-"):
            index = rest.pop(0)
        elif token.startswith("--index=") and len(token) > len("--index="):
            index = token[len("--index="):]
        elif token.startswith("-") or requirement is not None:
            return None  # another option, `--`, or a second argument: the command's to parse or refuse
        else:
            requirement = token
    if not requirement or os.path.lexists(requirement):
        return None  # a path where a name goes gets the command's explanation (cli/args.py)
    return PullArguments(requirement, index, flags)


def answer_warm_pull(argv: Sequence[str]) -> int | None:
    """Print a warm pull's report and return its exit code, or None when the click command must run."""
    plain = parse_plain_pull(argv)
    if plain is None:
        return None
    from ..errors import AdapterHubError
    from ..store import pull_cached

    try:
        result = pull_cached(plain.requirement, index=plain.index or settings.default_index(),
                             dependencies="no_deps" not in plain.flags)
    except AdapterHubError:
        return None  # the command says it, with its hint and exit code
    if result is None:
        return None
    from .pull_report import json_text, pull_lines

    if "json" in plain.flags:
        lines = [json_text(result.to_json())]
    elif "quiet" in plain.flags:
        lines = [str(result.path)]
    else:
        lines = pull_lines(result, signed=False)
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()
    return 0

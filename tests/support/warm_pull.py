"""What a warm ``adapterhub pull`` (the adapter already cached) must not load, and a probe that lists them.

A warm pull is a start-up-bound command (issue 12: <= 0.15 s for a registry name and for an ``hf:``
reference), so everything a download, a derivation, another command or a failure needs loads only when
it is needed. The list names our modules as well as the libraries: an import added at module level
anywhere on the warm path shows up here.
"""

from __future__ import annotations

NOT_ON_WARM_PATH = (
    # libraries: validation, HTTP, the Hub client, the runtime, logging and threads of the writer
    "jsonschema", "referencing", "requests", "urllib3", "huggingface_hub", "torch", "transformers", "filelock",
    "packaging.specifiers", "concurrent.futures", "logging", "socket", "shutil", "tempfile",
    # the CLI framework and the commands (a warm pull is answered before click loads: cli/warm_pull.py)
    "click", "adapterhub.cli.app", "adapterhub.cli.store_cmds", "adapterhub.cli.registry_cmds", "adapterhub.cli.publish_cmds", "adapterhub.cli.run_cmd",
    # the download stack, Hub listing and derivation
    "adapterhub.store.fetching", "adapterhub.store.sources", "adapterhub.store.writer", "adapterhub.store.http",
    "adapterhub.store.hub_repo", "adapterhub.store.hub_derive", "adapterhub.manifest.derive",
    "adapterhub.transport.client",
    # cache maintenance, search, signed-index trust, compositions
    "adapterhub.store.cache_gc", "adapterhub.store.cache_verify", "adapterhub.registry.searching",
    "adapterhub.registry.trust", "adapterhub.registry.hub_index", "adapterhub.blocks",
)

PROBE = ("import sys; from adapterhub.cli import main; rc = main(sys.argv[1:]); "
         f"print('LOADED', sorted(m for m in {NOT_ON_WARM_PATH!r} if m in sys.modules), rc)")
"""``python -c PROBE pull ...``: prints ``LOADED [...] <exit code>``."""

"""A small Hugging Face Hub-compatible server for air-gapped teams, tests and benchmarks.

It stores repositories on disk (content-addressed blobs, immutable commits, refs) and speaks the part
of the Hub HTTP API that ``huggingface_hub`` uses to create repos, commit files and download them
(``create_repo``, ``upload_folder``/``create_commit``, ``hf_hub_download``, ``model_info``,
``list_repo_tree``...). Standard library only.

    from adapterhub.server import TokenGrant, serve_in_thread
    alice = TokenGrant("a-long-random-secret", "alice", write={"org"})
    with serve_in_thread("/srv/hub", tokens=[alice]) as endpoint:   # http://127.0.0.1:<free port>
        HfApi(endpoint=endpoint, token=alice.token).create_repo("org/adapter")

From a shell: ``python -m adapterhub.server --root /srv/hub --port 8080 --token-file tokens.json``.
Who may write and read what is in :mod:`adapterhub.server.auth`.

Clients: ``huggingface_hub`` 2.x works with ``endpoint=`` / ``HfApi(endpoint=...)`` alone. 0.36 also
needs ``HF_ENDPOINT`` set before it is imported (or ``huggingface_hub.constants.ENDPOINT`` at run
time): it parses ``commitUrl`` against that constant, not against ``HfApi.endpoint``.
"""

from .app import HubServer, serve_in_thread
from .auth import AuthPolicy, Caller, TokenFileError, TokenGrant, load_token_file
from .context import ServerConfig
from .errors import HubApiError
from .faults import AppliedFault, Fault, FaultKind, FaultPlan
from .names import RepoRef
from .storage import Commit, FileEntry, HubStorage, StorageError

__all__ = [
    "AppliedFault",
    "AuthPolicy",
    "Caller",
    "Commit",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "FileEntry",
    "HubApiError",
    "HubServer",
    "HubStorage",
    "RepoRef",
    "ServerConfig",
    "StorageError",
    "TokenFileError",
    "TokenGrant",
    "load_token_file",
    "serve_in_thread",
]

"""Write endpoints: create a repo, pre-upload, commit (ndjson), validate a model card.

The server answers ``uploadMode: "regular"`` for every file, so clients send contents base64-encoded
inside the commit body and never reach for the LFS batch API or Xet, even with ``hf_xet`` installed.
The commit body is read one ndjson line at a time and each file is stored as a blob as soon as its
line is decoded; only when the whole body is in does the branch move, in one atomic step, so a
failed or refused commit leaves at most unreferenced blobs behind, never a half-applied commit.
"""

from __future__ import annotations

from .commit_lines import AddContent, AddStored, CommitHeader, read_commit
from .context import RequestContext
from .errors import BadRequest, HubApiError, ParentMismatch, RepoExists, RepoNotFound
from .names import REPO_TYPES, check_path, is_commit_id, parse_repo_ref
from .responses import Response, json_response
from .routes import RESERVED_NAMESPACES, Route
from .storage import AddFile, Operation


def create_repo(ctx: RequestContext, route: Route) -> Response:
    """``POST /api/repos/create`` ``{"name", "organization", "type", "private"}`` -> ``{"url"}``."""
    body = ctx.json_body()
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES:
        raise BadRequest(f"unknown repository type {repo_type!r}")
    name, organization = body.get("name"), body.get("organization")
    if not isinstance(name, str):
        raise BadRequest("'name' is required")
    if organization is None and "/" in name:
        organization, name = name.split("/", 1)
    if not isinstance(organization, str):
        raise BadRequest("repositories live in a namespace: create 'namespace/name' (set 'organization')")
    repo = parse_repo_ref(repo_type, organization, name)
    if repo.namespace.lower() in RESERVED_NAMESPACES:
        raise BadRequest(f"namespace {repo.namespace!r} is reserved")
    ctx.caller.check_write(repo, None)  # 403 outside the token's namespaces, whether or not the repo exists
    url = f"{ctx.base_url}/{repo.url_path}"
    try:
        ctx.storage.create_repo(
            repo, private=bool(body.get("private") or body.get("visibility") == "private")
        )
    except RepoExists as exists:
        exists.extra["url"] = url  # with exist_ok=True the client reads the URL from the 409 body
        raise
    return json_response({"url": url, "name": repo.repo_id, "id": repo.repo_id})


def validate_yaml(ctx: RequestContext, route: Route) -> Response:
    """The client checks a README's metadata here first; this server has no YAML parser and accepts it."""
    ctx.json_body()
    return json_response({"errors": [], "warnings": []})


def preupload(ctx: RequestContext, route: Route) -> Response:
    """Upload mode per file: always ``regular``, with the current git oid so unchanged files are skipped."""
    assert route.repo is not None and route.revision is not None
    body = ctx.json_body()
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        raise BadRequest("expected {'files': [...]}")
    commit = ctx.storage.resolve(route.repo, route.revision)
    answer = []
    for item in files:
        if not isinstance(item, dict):
            raise BadRequest("each file must be an object with a 'path'")
        path = check_path(item.get("path"))
        existing = commit.files.get(path)
        answer.append(
            {
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": existing.git_oid if existing else None,
            }
        )
    return json_response({"files": answer, "commitOid": commit.oid})


def commit(ctx: RequestContext, route: Route) -> Response:
    """``POST .../commit/{rev}[?create_pr=1]`` with an ndjson body: a header line, then operations."""
    assert route.repo is not None and route.revision is not None
    storage, repo = ctx.storage, route.repo
    if not storage.repo_exists(repo):
        raise RepoNotFound(f"repository {repo.repo_id} ({repo.repo_type}) not found")
    head = storage.resolve(repo, route.revision)
    if is_commit_id(route.revision):
        raise BadRequest("commits go to a branch or refs/pr/<n>, not to a commit id")
    create_pr = ctx.query_flag("create_pr")

    lines = read_commit(iter(ctx.body.readline, b""))
    header = next(lines)
    assert isinstance(header, CommitHeader)  # read_commit yields the header first or raises
    parent = header.parent_commit
    if parent is not None and not create_pr and not head.oid.startswith(parent.lower()):
        # Fail before reading any file content; storage checks again under the lock.
        raise ParentMismatch(
            f"{route.revision} of {repo.repo_id} is at {head.oid}, not at the given parent commit"
            f" {parent}: someone committed in between; fetch the new head and retry"
        )
    operations: list[Operation] = []
    for line in lines:
        if isinstance(line, AddContent):
            operations.append(AddFile(line.path, storage.put_blob(line.content)))
        elif isinstance(line, AddStored):
            operations.append(AddFile(line.path, storage.entry_for_blob(line.sha256, line.size)))
        else:
            operations.append(line)  # DeleteFile / DeleteFolder
    summary = header.summary
    plan = ctx.config.fault_plan  # tests: plan.fail(500, methods=("POST",), path=":commit")
    fault = plan.take("POST", repo.repo_id, ":commit") if plan is not None else None
    if fault is not None:  # the body was read and its blobs stored; the branch does not move
        raise HubApiError(f"injected fault: status {fault.status}", status=fault.status)
    result = storage.commit(
        repo,
        route.revision,
        operations,
        summary=summary,
        description=header.description,
        parent_commit=parent,
        create_pr=create_pr,
    )
    base = f"{ctx.base_url}/{repo.url_path}"
    return json_response(
        {
            "success": True,
            "commitOid": result.commit.oid,
            "commitUrl": f"{base}/commit/{result.commit.oid}",
            "commitMessage": summary,
            "hookOutput": "",
            "pullRequestUrl": f"{base}/discussions/{result.pr_num}" if result.pr_num is not None else None,
        }
    )

"""Read-only JSON endpoints: repo info, tree listing, paths-info, refs, commit history, whoami.

Every file is described with an ``lfs`` block (sha256, size) even though uploads arrive inline:
content addressing is this server's identity for a file, and clients (``verify_repo_checksums``,
adapterhub's own manifests) check sha256 when it is offered. ``oid``/``blobId`` stay the git blob
sha1, which is what the client compares to skip unchanged files on upload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, quote

from .context import RequestContext
from .errors import BadRequest, EntryNotFound
from .names import RepoRef, check_path
from .responses import Response, json_response
from .routes import Route
from .storage import Commit, FileEntry

_LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"


def lfs_pointer_size(entry: FileEntry) -> int:
    """Size of the git-lfs pointer file that would stand for this blob in a git checkout."""
    return len(_LFS_POINTER.format(sha=entry.sha256, size=entry.size).encode())


def lfs_info(entry: FileEntry) -> dict[str, object]:
    return {
        "oid": entry.sha256,
        "sha256": entry.sha256,
        "size": entry.size,
        "pointerSize": lfs_pointer_size(entry),
    }


def file_item(path: str, entry: FileEntry) -> dict[str, object]:
    return {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path, "lfs": lfs_info(entry)}


def folder_item(path: str, files: Mapping[str, FileEntry]) -> dict[str, object]:
    """A folder's ``oid`` is a sha1 over its files (git's tree id would need git's tree format)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for name in sorted(p for p in files if p.startswith(path + "/")):
        digest.update(f"{name}\0{files[name].git_oid}\n".encode())
    return {"type": "directory", "oid": digest.hexdigest(), "size": 0, "path": path}


def repo_info_payload(repo: RepoRef, meta: Mapping[str, object], commit: Commit) -> dict[str, object]:
    siblings = [
        {"rfilename": path, "size": entry.size, "blobId": entry.git_oid, "lfs": lfs_info(entry)}
        for path, entry in commit.files.items()
    ]
    payload: dict[str, object] = {
        "_id": hashlib.sha1(f"{repo}".encode(), usedforsecurity=False).hexdigest()[:24],
        "id": repo.repo_id,
        "author": repo.namespace,
        "sha": commit.oid,
        "lastModified": commit.created_at,
        "createdAt": meta.get("created_at"),
        "private": bool(meta.get("private", False)),
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(entry.size for entry in commit.files.values()),
    }
    if repo.repo_type == "model":
        payload["modelId"] = repo.repo_id
    return payload


def repo_info(ctx: RequestContext, route: Route) -> Response:
    assert route.repo is not None
    meta = ctx.storage.repo_meta(route.repo)
    commit = ctx.storage.resolve(route.repo, route.revision or "main")
    return json_response(repo_info_payload(route.repo, meta, commit))


def tree_items(files: Mapping[str, FileEntry], prefix: str, recursive: bool) -> list[dict[str, object]]:
    """Entries under ``prefix`` ("" is the root): direct children, or everything if ``recursive``."""
    base = f"{prefix}/" if prefix else ""
    folders: set[str] = set()
    items: list[dict[str, object]] = []
    for path, entry in files.items():
        if not path.startswith(base):
            continue
        parts = path[len(base) :].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, min(depth, len(parts) - 1) + 1):
            folders.add(base + "/".join(parts[:i]))
        if recursive or len(parts) == 1:
            items.append(file_item(path, entry))
    items.extend(folder_item(folder, files) for folder in folders)
    items.sort(key=lambda item: (item["type"] != "directory", str(item["path"])))
    return items


def tree(ctx: RequestContext, route: Route) -> Response:
    assert route.repo is not None and route.revision is not None and route.path is not None
    commit = ctx.storage.resolve(route.repo, route.revision)
    prefix = route.path
    if prefix and not any(p.startswith(prefix + "/") for p in commit.files):
        raise EntryNotFound(
            f"folder {prefix!r} not found in {route.repo.repo_id} at {route.revision}",
            headers={"X-Repo-Commit": commit.oid},
        )
    recursive = ctx.query_flag("recursive")
    items = tree_items(commit.files, prefix, recursive)
    try:
        start = int(ctx.query_value("cursor") or 0)
    except ValueError:
        raise BadRequest("cursor must be an integer") from None
    size = ctx.config.tree_page_size
    page = items[start : start + size]
    headers = [("X-Repo-Commit", commit.oid)]
    if start + size < len(items):
        # Later pages name the commit, not the branch, so a push between pages cannot mix trees.
        path_part = "/" + quote(prefix, safe="") if prefix else ""
        expand = "true" if ctx.query_flag("expand") else "false"
        next_url = (
            f"{ctx.base_url}/api/{route.repo.repo_type}s/{route.repo.repo_id}/tree/{commit.oid}{path_part}"
            f"?recursive={'true' if recursive else 'false'}&expand={expand}&cursor={start + size}"
        )
        headers.append(("Link", f'<{next_url}>; rel="next"'))
    return json_response(page, headers=headers)


def paths_info(ctx: RequestContext, route: Route) -> Response:
    """``POST .../paths-info/{rev}`` with form (or JSON) ``paths``: the entries that exist."""
    assert route.repo is not None and route.revision is not None
    content_type = ctx.headers.get("Content-Type", "")
    if "json" in content_type:
        body = ctx.json_body()
        paths = body.get("paths", []) if isinstance(body, dict) else []
    else:
        if ctx.body.length > 16 << 20:
            raise BadRequest("paths-info body too large")
        form = parse_qs(ctx.body.read().decode("utf-8", "replace"), keep_blank_values=True)
        paths = form.get("paths", [])
    if isinstance(paths, str):
        paths = [paths]
    commit = ctx.storage.resolve(route.repo, route.revision)
    return json_response(list(_path_items(commit.files, (check_path(str(p)) for p in paths))))


def _path_items(files: Mapping[str, FileEntry], paths: Iterable[str]) -> Iterable[dict[str, object]]:
    for path in paths:
        if path in files:
            yield file_item(path, files[path])
        elif any(p.startswith(path + "/") for p in files):
            yield folder_item(path, files)


def refs(ctx: RequestContext, route: Route) -> Response:
    assert route.repo is not None
    repo_refs = ctx.storage.refs(route.repo)
    payload: dict[str, object] = {
        "branches": [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(repo_refs.branches.items())
        ],
        "converts": [],
        "tags": [],
    }
    if ctx.query_flag("include_prs"):
        payload["pullRequests"] = [
            {"name": f"refs/pr/{num}", "ref": f"refs/pr/{num}", "targetCommit": oid}
            for num, oid in sorted(repo_refs.prs.items())
        ]
    return json_response(payload)


def commits(ctx: RequestContext, route: Route) -> Response:
    assert route.repo is not None and route.revision is not None
    history = [
        {
            "id": commit.oid,
            "title": commit.summary,
            "message": commit.description,
            "authors": [],
            "date": commit.created_at,
        }
        for commit in ctx.storage.history(route.repo, route.revision)
    ]
    return json_response(history)


def whoami(ctx: RequestContext, route: Route) -> Response:
    """Enough of ``whoami-v2`` for a client to check its token: the user and the namespaces it may write."""
    grant = ctx.caller.require_token()
    orgs = [{"type": "org", "name": scope} for scope in sorted(grant.write) if "/" not in scope]
    role = "admin" if grant.admin else "write" if grant.write else "read"
    return json_response({"type": "user", "name": grant.user, "fullname": grant.user, "orgs": orgs,
                          "auth": {"type": "access_token", "accessToken": {"displayName": grant.user, "role": role}}})

"""Read-only JSON endpoints: repo info, tree listing, paths-info, refs, commit history, whoami, model list.

Files are listed as the Hub lists them: an LFS file (by the commit's ``.gitattributes`` or its size,
see :mod:`.repo_card`) with an ``lfs`` block carrying its sha256, a plain git file with only its git blob
sha1 ``oid``, which is all a client can check it against. Repo info carries ``cardData`` (the README's
front matter), ``library_name`` and ``tags`` from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, quote

from .context import RequestContext
from .errors import BadRequest, EntryNotFound
from .faults import Fault, FaultKind, FaultPlan
from .names import RepoRef, check_path
from .repo_card import LfsRule, card_data, card_fields, lfs_rule
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


class Lister:
    """Describes the files of one commit of one repo (LFS or plain; listing faults applied)."""

    def __init__(self, ctx: RequestContext, repo: RepoRef, files: Mapping[str, FileEntry]) -> None:
        self.rule: LfsRule = lfs_rule(ctx.storage, files)
        self.plan: FaultPlan | None = ctx.config.fault_plan
        self.repo_id = repo.repo_id

    def hashes(self, path: str, entry: FileEntry, fault: Fault | None = None) -> tuple[str | None, dict[str, object] | None]:
        """The ``oid`` and ``lfs`` block to list for the file (both None: listed without a hash)."""
        lfs = lfs_info(entry) if self.rule.is_lfs(path, entry) else None
        oid: str | None = entry.git_oid
        if fault is not None and fault.kind is FaultKind.UNHASHED:
            return None, None
        if fault is not None and fault.kind is FaultKind.LISTED_HASH:
            if lfs is not None:
                lfs = {**lfs, "oid": _wrong(entry.sha256), "sha256": _wrong(entry.sha256)}
            else:
                oid = _wrong(entry.git_oid)
        return oid, lfs

    def fault(self, path: str) -> Fault | None:
        return self.plan.take("LIST", self.repo_id, path) if self.plan is not None else None

    def file_items(self, path: str, entry: FileEntry) -> list[dict[str, object]]:
        """The tree / paths-info items for the file: one, unless a listing fault rewrites it."""
        fault = self.fault(path)
        oid, lfs = self.hashes(path, entry, fault)
        item: dict[str, object] = {"type": "file", "oid": oid, "size": entry.size, "path": path}
        if lfs is not None:
            item["lfs"] = lfs
        if fault is not None and fault.kind is FaultKind.REWRITE_LISTING and fault.rewrite is not None:
            return fault.rewrite(item)
        return [item]


def _wrong(hex_digest: str) -> str:
    """Another digest of the same length (the last digit changed)."""
    return hex_digest[:-1] + ("0" if hex_digest[-1] != "0" else "1")


def folder_item(path: str, files: Mapping[str, FileEntry]) -> dict[str, object]:
    """A folder's ``oid`` is a sha1 over its files (git's tree id would need git's tree format)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for name in sorted(p for p in files if p.startswith(path + "/")):
        digest.update(f"{name}\0{files[name].git_oid}\n".encode())
    return {"type": "directory", "oid": digest.hexdigest(), "size": 0, "path": path}


def _sibling(lister: Lister, path: str, entry: FileEntry) -> dict[str, object]:
    oid, lfs = lister.hashes(path, entry, lister.fault(path))
    item: dict[str, object] = {"rfilename": path, "size": entry.size, "blobId": oid}
    if lfs is not None:
        item["lfs"] = lfs
    return item


def repo_info_payload(ctx: RequestContext, repo: RepoRef, meta: Mapping[str, object],
                      commit: Commit) -> dict[str, object]:
    lister = Lister(ctx, repo, commit.files)
    siblings = [_sibling(lister, path, entry) for path, entry in commit.files.items()]
    card = card_data(ctx.storage, commit)
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
        "siblings": siblings,
        "usedStorage": sum(entry.size for entry in commit.files.values()),
    }
    payload.update(card_fields(card))
    if card is not None:
        payload["cardData"] = card
    if repo.repo_type == "model":
        payload["modelId"] = repo.repo_id
    fault = ctx.config.fault_plan.take("INFO", repo.repo_id, "") if ctx.config.fault_plan is not None else None
    if fault is not None and fault.kind is FaultKind.REWRITE_LISTING and fault.rewrite is not None:
        payload = fault.rewrite(payload)[0]
    return payload


def repo_info(ctx: RequestContext, route: Route) -> Response:
    assert route.repo is not None
    meta = ctx.storage.repo_meta(route.repo)
    commit = ctx.storage.resolve(route.repo, route.revision or "main")
    return json_response(repo_info_payload(ctx, route.repo, meta, commit))


def tree_items(lister: Lister, files: Mapping[str, FileEntry], prefix: str,
               recursive: bool) -> list[dict[str, object]]:
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
            items.extend(lister.file_items(path, entry))
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
    items = tree_items(Lister(ctx, route.repo, commit.files), commit.files, prefix, recursive)
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
    lister = Lister(ctx, route.repo, commit.files)
    return json_response(list(_path_items(lister, commit.files, (check_path(str(p)) for p in paths))))


def _path_items(lister: Lister, files: Mapping[str, FileEntry], paths: Iterable[str]) -> Iterable[dict[str, object]]:
    for path in paths:
        if path in files:
            yield from lister.file_items(path, files[path])
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

"""``HEAD``/``GET /{repo}/resolve/{revision}/{path}``: file metadata and bytes, ranges included.

Headers are the ones ``huggingface_hub`` reads from the HEAD (``get_hf_file_metadata``):
``X-Repo-Commit`` (required), ``ETag``/``X-Linked-Etag`` (the blob name in its cache; we use the
sha256 so the cache key is the content address), ``X-Linked-Size``/``Content-Length``. No
``X-Xet-Hash`` is ever sent, so clients stay on plain HTTP. 404s carry ``X-Error-Code`` so the client
raises its typed errors, and ``EntryNotFound`` carries ``X-Repo-Commit`` so it can cache the miss.
"""

from __future__ import annotations

from urllib.parse import quote

from .context import RequestContext
from .errors import EntryNotFound, RepoNotFound
from .names import RepoRef, is_commit_id
from .ranges import ByteRange, Unsatisfiable, parse_range
from .responses import FileSlice, Response, json_response
from .routes import Route
from .served import ServedFile
from .storage import HubStorage


def locate(storage: HubStorage, repo: RepoRef, revision: str, path: str) -> ServedFile:
    if not storage.repo_exists(repo):
        raise RepoNotFound(f"repository {repo.repo_id} ({repo.repo_type}) not found")
    commit = storage.resolve(repo, revision)
    entry = commit.files.get(path)
    if entry is None:
        raise EntryNotFound(
            f"{path} not found in {repo.repo_id} at {revision}", headers={"X-Repo-Commit": commit.oid}
        )
    return ServedFile(repo, path, commit.oid, entry, storage.blob_path(entry.sha256), is_commit_id(revision))


def _common_headers(file: ServedFile) -> list[tuple[str, str]]:
    name = file.path.rsplit("/", 1)[-1]
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return [
        ("X-Repo-Commit", file.commit_oid),
        ("ETag", f'"{file.entry.sha256}"'),
        ("X-Linked-Etag", f'"{file.entry.sha256}"'),
        ("X-Linked-Size", str(file.entry.size)),
        ("Accept-Ranges", "bytes"),
        ("Content-Type", "application/octet-stream"),
        ("Content-Disposition", f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"),
        ("Cache-Control", "public, max-age=31536000, immutable" if file.pinned else "no-cache"),
    ]


def file_response(file: ServedFile, byte_range: ByteRange | None) -> Response:
    """The correct answer: 200 with the whole file, or 206 with one range."""
    headers = _common_headers(file)
    if byte_range is None:
        headers.append(("Content-Length", str(file.entry.size)))
        body = [FileSlice(file.blob, 0, file.entry.size)]
        return Response(200, headers, body)
    headers += [("Content-Range", byte_range.content_range()), ("Content-Length", str(byte_range.length))]
    return Response(206, headers, [FileSlice(file.blob, byte_range.start, byte_range.length)])


def resolve(ctx: RequestContext, route: Route) -> Response:
    assert route.repo is not None and route.revision is not None and route.path is not None
    file = locate(ctx.storage, route.repo, route.revision, route.path)
    range_header = ctx.headers.get("Range")
    if_range = ctx.headers.get("If-Range")
    if if_range is not None and if_range.strip() != f'"{file.entry.sha256}"':
        range_header = None  # the client's partial copy is of another version: send it all
    try:
        byte_range = parse_range(range_header, file.entry.size)
    except Unsatisfiable:
        headers = [(k, v) for k, v in _common_headers(file) if k != "Content-Type"]
        headers.append(("Content-Range", f"bytes */{file.entry.size}"))
        return json_response({"error": f"range {range_header!r} not satisfiable"}, 416, headers)
    plan = ctx.config.fault_plan
    fault = plan.take(ctx.method, route.repo.repo_id, route.path, range_header) if plan is not None else None
    if fault is not None:
        return fault.respond(file, byte_range, file_response)
    return file_response(file, byte_range)

"""``GET /api/models`` (and ``/api/datasets``): the repository search ``HfApi.list_models`` calls.

Supported query parameters, as the client sends them: ``search`` (substring of the repo id, any case),
``author`` (the namespace), ``filter`` (repeatable; every value must be one of the repo's tags, which
include ``library_name`` and ``base_model:<id>`` from the card), ``sort`` (``lastModified``,
``createdAt``, ``id``, ``downloads``, ``likes``; ``direction=1`` ascends, default descends) and
``limit``. ``full``/``cardData`` add the siblings and the card. Private repositories are listed only to
a caller who may read them, as on the Hub.
"""

from __future__ import annotations

from .context import RequestContext
from .errors import BadRequest, RepoNotFound, RevisionNotFound
from .info import repo_info_payload
from .responses import Response, json_response
from .routes import Route

_SORT_KEYS = {"lastModified": "lastModified", "last_modified": "lastModified", "createdAt": "createdAt",
              "created_at": "createdAt", "id": "id", "downloads": "downloads", "likes": "likes",
              "trending_score": "likes", "trendingScore": "likes"}
MAX_LIMIT = 1000


def list_repos(ctx: RequestContext, route: Route) -> Response:
    repo_type = route.path or "model"
    query = ctx.query_value
    search = (query("search") or "").lower()
    author = query("author")
    wanted = [v for v in ctx.query.get("filter", []) if v]
    sort = query("sort")
    if sort is not None and sort not in _SORT_KEYS:
        raise BadRequest(f"sort must be one of {sorted(_SORT_KEYS)}, not {sort!r}")
    try:
        limit = min(int(query("limit") or MAX_LIMIT), MAX_LIMIT)
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    full = ctx.query_flag("full") or ctx.query_flag("cardData")
    found = []
    for repo in ctx.storage.list_repos(repo_type):
        if (author and repo.namespace != author) or (search and search not in repo.repo_id.lower()):
            continue
        try:
            meta = ctx.storage.repo_meta(repo)
            ctx.caller.check_read(repo, bool(meta.get("private", False)))
            commit = ctx.storage.resolve(repo, "main")
        except (RepoNotFound, RevisionNotFound):
            continue  # private to this caller, or without a main branch
        payload = repo_info_payload(ctx, repo, meta, commit)
        tags = set(payload.get("tags") or ())  # type: ignore[arg-type]
        if any(w not in tags for w in wanted):
            continue
        if not full:
            payload.pop("siblings", None)
            payload.pop("cardData", None)
        found.append(payload)
    if sort is not None:
        key = _SORT_KEYS[sort]
        found.sort(key=lambda p: (p.get(key) is not None, p.get(key) or 0), reverse=query("direction") != "1")
    return json_response(found[: max(limit, 0)])

"""Which archived download links can be pulled: a URL must name a file whose bytes the sha256 pins.

The archived AdapterHub index was written by hand, so a link may be a web page rather than a file:
a GitHub ``…/tree/…`` page lists a directory (HTML), a ``…/blob/…`` page shows a file inside HTML.
An archive source that names a page can never pass its sha256 check, so the importer rewrites a page
to the URL that serves the same bytes (GitHub's raw host, the Hub's ``resolve`` route) when one exists,
and refuses it with the reason otherwise. The rewrite never changes *which* bytes are meant, so the
pinned sha256 still decides: a rewritten URL that served other bytes would fail verification at pull.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..errors import AdapterHubError

ARCHIVE_SUFFIXES: dict[str, tuple[str, ...]] = {"zip": (".zip",), "tar": (".tar",), "tar.gz": (".tar.gz", ".tgz")}
"""File-name endings of each archive format: a ``tree`` link ending so names a file, not a directory."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_GITHUB = re.compile(r"/(?P<owner>[^/]+)/(?P<repo>[^/]+)(?:/(?P<kind>[^/]+)(?:/(?P<rest>.+))?)?/?")
_GITHUB_DOWNLOADS = ("archive", "releases")
"""``github.com/O/R/archive/…`` and ``…/releases/download/…`` are files (served through a redirect)."""
_HUB = re.compile(r"/(?P<repo>(?:datasets/|spaces/)?[^/]+/[^/]+)/(?P<kind>tree|blob)/(?P<rest>.+)")


class Refused(AdapterHubError):
    """An archived version the importer will not list: ``reason`` is a short key, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _names_file(path: str, fmt: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES.get(fmt, (".zip",)))


def download_url(url: str, fmt: str = "zip") -> tuple[str, str | None]:
    """``(url to download, note)`` for an archived link; the note says what was rewritten (None: as is).

    Raises :class:`Refused` for a link that cannot deliver the archive's bytes.
    """
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise Refused("not-a-download-url", f"{url!r} is not an http(s) URL")
    host = parts.hostname.lower()
    if host in ("github.com", "www.github.com"):
        return _github(text, parts.path, fmt)
    if host in ("huggingface.co", "www.huggingface.co"):
        match = _HUB.fullmatch(parts.path)
        if match and (match["kind"] == "blob" or _names_file(match["rest"], fmt)):
            new = f"https://huggingface.co/{match['repo']}/resolve/{match['rest']}"
            return new, f"Hugging Face {match['kind']} page {text} rewritten to its file URL {new}"
        if match:
            raise Refused("web-page-url", f"{text} is a Hugging Face tree page (a directory listing in HTML), "
                                          "not a file; no download URL serves the pinned archive")
    return text, None


def _github(url: str, path: str, fmt: str) -> tuple[str, str | None]:
    match = _GITHUB.fullmatch(path)
    kind = match["kind"] if match else None
    if match and kind in _GITHUB_DOWNLOADS and match["rest"]:
        return url, None
    if match and match["rest"] and (kind in ("blob", "raw") or (kind == "tree" and _names_file(match["rest"], fmt))):
        # the raw host serves the file a blob (or, for a file, tree) page shows: <ref>/<path> stays as written
        new = f"https://raw.githubusercontent.com/{match['owner']}/{match['repo']}/{match['rest']}"
        return new, f"GitHub {kind} page {url} rewritten to its raw file URL {new}"
    if kind == "tree":
        raise Refused("web-page-url", f"{url} is a GitHub tree page (a directory listing in HTML), not a file; "
                                      "GitHub's generated archives hold the whole repository and are not "
                                      "byte-stable, so no download URL serves the pinned archive")
    raise Refused("web-page-url", f"{url} is a GitHub web page, not a file download (expected a raw, "
                                  "releases/download or archive URL)")


def sha256_pin(file: dict) -> str:
    """The archived version's sha256, lower-case; :class:`Refused` when it is missing or malformed.

    A sha1 alone is not enough: the store verifies sha256, and sha1 is broken for collisions.
    """
    pin = file.get("sha256")
    if pin is None or pin == "":
        only = " (it has only a sha1, which is recorded but never used to verify)" if file.get("sha1") else ""
        raise Refused("no-sha256-pin", f"no sha256 pin{only}; an archive is pulled only against a pinned sha256")
    if not isinstance(pin, str) or not _SHA256.fullmatch(pin.strip().lower()):
        raise Refused("bad-sha256-pin", f"sha256 {str(pin)[:80]!r} is not 64 hex digits")
    return pin.strip().lower()

"""The one place that decides whether a Hub token may be sent to a URL.

A token goes only to an origin (scheme, host, port) of an endpoint the *user* configured:
``HF_ENDPOINT`` (else the public Hub), ``ADAPTERHUB_TOKEN_ENDPOINTS`` and an explicit ``--endpoint`` /
``endpoint=``. An endpoint that an index ``config.json`` or a manifest names is data from someone else
and never receives it. Over plain ``http`` a token goes only to a loopback host (a local test or
mirror server), never across a network in clear text. Redirects are the transport's business: the
token stays with the origin the request started at (see :mod:`adapterhub.transport.client`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .. import settings
from ..errors import InsecureTokenError

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an http(s) URL with the default port filled in; None otherwise."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        port = parts.port
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme]


def is_loopback(host: str) -> bool:
    import ipaddress  # only when a token is about to be sent: keeps the warm CLI path lean

    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _clear_text_problem(origin: Origin) -> str | None:
    if origin[0] == "http" and not is_loopback(origin[1]):
        return f"plain http to {origin[1]}:{origin[2]} would send it in clear text (use https)"
    return None


@dataclass(frozen=True)
class TokenScope:
    """The origins that may receive the user's token (see the module docstring)."""

    origins: frozenset[Origin]

    @classmethod
    def configured(cls, extra: Iterable[str | None] = ()) -> TokenScope:
        """The user's endpoints from the environment, plus ``extra`` ones they passed explicitly."""
        found = (origin_of(e) for e in (*settings.token_endpoints(), *extra) if e)
        return cls(frozenset(o for o in found if o is not None))

    def refusal(self, url: str) -> str | None:
        """Why no token may go to ``url``, or None when it may."""
        origin = origin_of(url)
        if origin is None:
            return f"{url!r} is not an http(s) URL"
        if origin not in self.origins:
            return (f"{origin[0]}://{origin[1]}:{origin[2]} is not an endpoint you configured "
                    "(HF_ENDPOINT, --endpoint or ADAPTERHUB_TOKEN_ENDPOINTS)")
        return _clear_text_problem(origin)

    def token_for(self, url: str, token: str | bool | None) -> str | None:
        """The token to send to ``url``: ``token`` itself, the user's stored token for None/True, or
        None when ``token`` is False or ``url`` may not receive one."""
        if token is False or self.refusal(url) is not None:
            return None
        if isinstance(token, str):
            return token or None
        from huggingface_hub import get_token  # HF_TOKEN, then the token file `hf auth login` wrote

        return get_token()


def check_token_destination(url: str, token: str | bool | None) -> None:
    """Raise :class:`InsecureTokenError` when a token exists for ``url`` but would travel in clear text.

    For callers that must authenticate to an endpoint the user named (publishing) and would rather
    stop than go on without the token.
    """
    origin = origin_of(url)
    problem = f"{url!r} is not an http(s) URL" if origin is None else _clear_text_problem(origin)
    if problem is None or token is False:
        return
    if token is None or token is True:
        from huggingface_hub import get_token

        if get_token() is None:
            return
    raise InsecureTokenError(f"refusing to send your Hub token to {url}: {problem}",
                             hint="use an https endpoint, or a loopback address for a local server")

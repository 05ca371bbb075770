"""The bottom-layer HTTP transport shared by the registry, the store and publishing.

One place for retries, redirects, deadlines, size caps, typed errors (:mod:`.client`), transfer
settings (:mod:`.options`) and where a token may go (:mod:`.tokens`). Importing this package is
cheap: ``requests`` is imported when the first request is made.
"""

from .client import CHUNK, Deadline, Fetched, Opened, Transport, header_int, transport_error
from .options import FetchOptions
from .tokens import TokenScope, check_token_destination, is_loopback, origin_of

__all__ = ["CHUNK", "Deadline", "Fetched", "Opened", "Transport", "header_int", "transport_error", "FetchOptions", "TokenScope",
           "check_token_destination", "is_loopback", "origin_of"]

"""Where a module call carries transformers' KV cache: every keyword name it has used, in one place.

transformers renames the cache argument now and then: ``layer_past`` (GPT-2 in 4.x), ``past_key_value``
(attention modules before 4.56), ``past_key_values`` (4.56 to 5.23), ``cache`` (5.24 on; the old names
are deprecated aliases that the model renames before calling its layers), ``cache_params`` (state-space
models). A hook that looks for one name silently misses the cache when the name changes, so every hook
asks this module instead: the next rename is one entry in :data:`CACHE_KEYWORDS`. A value is also
recognised as a cache by its type (any ``transformers`` ``Cache``, or an object with its
``get_seq_length``/``update`` methods), wherever it sits among the arguments, positional ones too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

# Newest first. Adding a name here is all a future rename needs.
CACHE_KEYWORDS = ("cache", "past_key_values", "past_key_value", "layer_past", "cache_params")
# Arguments that only make sense together with a cache (positions of the new tokens in it).
CACHE_POSITION_KEYWORDS = ("cache_position",)
USE_CACHE_KEYWORD = "use_cache"


def is_cache(value: Any) -> bool:
    """True for a KV cache object: a transformers ``Cache`` or anything with its interface."""
    if value is None or isinstance(value, torch.Tensor | str | bytes | int | float | bool):
        return False
    from transformers.cache_utils import Cache

    if isinstance(value, Cache):
        return True
    return callable(getattr(value, "get_seq_length", None)) and callable(getattr(value, "update", None))


def find_cache(args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None) -> Any | None:
    """The KV cache passed to a call, however it arrives: under any known keyword (a legacy tuple
    counts), or as a cache object in any keyword or positional argument. None when there is none."""
    kwargs = kwargs or {}
    for name in CACHE_KEYWORDS:
        value = kwargs.get(name)
        if value is not None:
            return value
    for value in (*args, *kwargs.values()):
        if is_cache(value):
            return value
    return None


def cached_length(cache: Any, layer_idx: int | None) -> int:
    """Tokens already stored for ``layer_idx`` (the self-attention part of an encoder-decoder cache).

    A legacy tuple cache (``((k, v), ...)``) counts its keys' sequence length; an object whose length
    cannot be read counts as 0, and callers that must not continue a cache then rely on marking it.
    """
    inner = getattr(cache, "self_attention_cache", cache)
    if isinstance(inner, tuple | list):
        entry = inner[layer_idx or 0] if len(inner) > (layer_idx or 0) else ()
        keys = entry[0] if isinstance(entry, tuple | list) and entry else entry
        return int(keys.shape[-2]) if isinstance(keys, torch.Tensor) and keys.dim() >= 2 else 0
    try:
        return int(inner.get_seq_length(layer_idx or 0))
    except (AttributeError, TypeError, IndexError):
        return 0


def without_cache(call: Mapping[str, Any]) -> dict[str, Any]:
    """``call``'s arguments with every cache (by name or by type) and cache position removed and
    ``use_cache`` off: for a forward that must neither read nor write the cache."""
    out = dict(call)
    for name, value in call.items():
        if name in CACHE_KEYWORDS or name in CACHE_POSITION_KEYWORDS or is_cache(value):
            out[name] = None
    if USE_CACHE_KEYWORD in out:
        out[USE_CACHE_KEYWORD] = False
    return out

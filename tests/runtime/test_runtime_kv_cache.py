"""Finding the KV cache in a module call, by every name transformers has used and by type."""

from __future__ import annotations

import re

import pytest
import torch
from support.paths import REPO
from support.runtime_helpers import output_cache, tiny_model

from adapterhub.runtime.kv_cache import CACHE_KEYWORDS, cached_length, find_cache, is_cache, without_cache

PACKAGE = REPO / "adapterhub"


@pytest.fixture(scope="module")
def cache():
    """A real cache from this transformers version: a tiny Llama's prefill of 5 tokens."""
    from transformers import AutoModelForCausalLM

    model = tiny_model("llama", cls=AutoModelForCausalLM)
    with torch.no_grad():
        return output_cache(model(input_ids=torch.randint(3, 99, (1, 5)), use_cache=True))


def test_a_cache_is_found_under_every_keyword_positionally_and_under_any_name(cache):
    x = torch.zeros(1, 2, 32)
    for name in CACHE_KEYWORDS:
        assert find_cache((x,), {name: cache}) is cache, name
    assert find_cache((x, None, None, cache), {}) is cache
    assert find_cache((x,), {"kv_cache_of_the_future": cache}) is cache
    legacy = ((torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4)),)
    assert find_cache((x,), {"past_key_values": legacy}) is legacy  # a legacy tuple counts under a cache name
    assert find_cache((x, legacy), {"attention_mask": x, "use_cache": True}) is None
    assert not is_cache(x) and not is_cache(legacy) and is_cache(cache)


def test_cached_length_reads_caches_and_legacy_tuples(cache):
    assert cached_length(cache, 0) == 5 and cached_length(cache, 1) == 5
    legacy = ((torch.zeros(1, 2, 7, 4), torch.zeros(1, 2, 7, 4)),)
    assert cached_length(legacy, 0) == 7
    assert cached_length(object(), 0) == 0


def test_without_cache_drops_every_cache_argument(cache):
    call = {"hidden_states": torch.zeros(1), "cache": cache, "past_key_values": cache, "cache_position": torch.arange(2),
            "use_cache": True, "renamed_cache": cache}
    out = without_cache(call)
    assert out["hidden_states"] is call["hidden_states"]
    assert all(out[k] is None for k in ("cache", "past_key_values", "cache_position", "renamed_cache"))
    assert out["use_cache"] is False
    assert call["cache"] is cache  # the caller's dict is left alone


def test_cache_keywords_are_named_in_one_module_only():
    """The next rename is one line in kv_cache.py: no other module looks a cache up by its name."""
    literal = re.compile(r"""["'](cache|past_key_values?|layer_past|cache_params|cache_position)["']""")
    model_code = [p for d in ("runtime", "compose", "interop") for p in sorted((PACKAGE / d).rglob("*.py"))]
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{i}"
                 for path in model_code if path.name != "kv_cache.py"
                 for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if literal.search(line)]
    assert offenders == [], offenders

"""Composition blocks as data: JSON round trip, nesting rules, typed errors (no torch needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adapterhub.compose import (
    Ensemble,
    Fuse,
    Mix,
    Parallel,
    Route,
    Stack,
    document,
    from_document,
    from_json,
    to_json,
    validate,
)
from adapterhub.errors import CompositionError

EXAMPLES = [
    "a",
    Stack("a", "b"),
    Stack("a", Fuse("b", Stack("c", "d"), fusion="f")),
    Mix("a", "b", weights=[1, 3]),
    Mix("a", "b", weights=[[1, 0], [0.5, 0.5]]),
    Mix("a", Stack("b", "c"), weights="emea", steps=10, lr=5.0),
    Ensemble("a", Stack("b", "c"), weights=[2, 1], mode="logits"),
    Route(["a", None, Stack("a", "b"), "c"]),
    Stack("shared", Parallel("a", Mix("b", "c"))),
]


@pytest.mark.parametrize("block", EXAMPLES, ids=[repr(b)[:40] for b in EXAMPLES])
def test_json_round_trip(block):
    validate(block)
    data = json.loads(json.dumps(to_json(block)))
    assert from_json(data) == block
    assert from_document(json.loads(json.dumps(document(block)))) == block


def test_json_form_is_documented_shape():
    assert to_json(Stack("a", Fuse("b", "c", fusion="f"))) == {
        "type": "Stack", "children": ["a", {"type": "Fuse", "children": ["b", "c"], "fusion": "f"}]}
    assert to_json(Route(["a", None])) == {"type": "Route", "children": ["a", None]}


@pytest.mark.parametrize("data,match", [
    ({"type": "Stacks", "children": ["a"]}, "not a composition block"),
    ({"type": "Stack", "children": ["a"], "weights": [1]}, "unknown keys"),
    ({"type": "Mix", "children": ["a", "b"], "weights": "magic"}, "unknown weights"),
    ({"type": "Stack", "children": []}, "at least one member"),
    ({"type": "Stack", "children": [3]}, "not a composition block: 3"),
    ({"type": "Ensemble", "children": ["a"], "mode": "votes"}, "mode"),
    (["a"], "not a composition block"),
])
def test_from_json_rejects(data, match):
    with pytest.raises(CompositionError, match=match):
        from_json(data)
    with pytest.raises(CompositionError, match="format"):
        from_document({"composition": "a"})


@pytest.mark.parametrize("block,match", [
    (Fuse(Mix("a", "b"), "c", fusion="f"), "Mix cannot be nested inside Fuse.*may hold: adapter names and Stacks"),
    (Mix("a", Ensemble("b", "c")), "Ensemble cannot be nested inside Mix"),
    (Ensemble("a", Route(["b"])), "Route cannot be nested inside Ensemble"),
    (Route(["a", Parallel("b", "c")]), "Parallel cannot be nested inside Route"),
    (Stack(Parallel("a", "b"), Ensemble("c", "d")), "at most one Parallel/Ensemble"),
    (Fuse(Stack("a", Parallel("b", "c")), fusion="f"), "top-level block or inside the top-level Stack"),
    (Mix(Mix("a", "b", weights="emea"), "c"), "cannot be nested|emea"),
])
def test_undefined_nestings_are_typed_errors(block, match):
    with pytest.raises(CompositionError, match=match):
        validate(block)


def test_constructor_errors():
    with pytest.raises(CompositionError, match="fusion="):
        Fuse("a", "b", fusion="")
    with pytest.raises(CompositionError, match="one entry per example"):
        Route("ab")
    with pytest.raises(CompositionError, match="not all zero"):
        Ensemble("a", "b", weights=[0, 0])
    assert Stack(["a", "b"]) == Stack("a", "b")
    assert list(Stack("a", Fuse("b", "c", fusion="f")).leaves()) == ["a", "b", "c"]


def test_blocks_import_without_torch():
    code = "import sys, adapterhub.compose as c; c.Stack('a'); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

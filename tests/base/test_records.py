"""``@frozen_record`` behaves as ``@dataclass(frozen=True)`` (adapterhub/records.py): checked twin against twin.

Each case defines the same class body twice, once per decorator, then drives both with the same arguments
and compares every observable: construction (or the error type), equality within and across instances,
hashes, ``repr``, immutability, ``dataclasses.fields/replace/asdict/astuple``, ``__match_args__``, pattern
matching, copying, inheritance and ``__post_init__``. The records the package defines are checked too.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapterhub.records import frozen_record

DECORATORS = {"dataclass": dataclass(frozen=True), "record": frozen_record}


def twins(body: dict[str, Any], annotations: dict[str, str], name: str = "Thing",
          bases: tuple[type, ...] | tuple[type, type] = ()) -> dict[str, type]:
    """The same class, made by each decorator (``bases``: per decorator when two are given)."""
    made = {}
    for i, (kind, deco) in enumerate(DECORATORS.items()):
        base = (bases[i],) if len(bases) == 2 else bases
        ns = {"__doc__": f"A {name}.", "__annotations__": dict(annotations), "__module__": __name__,
              "__qualname__": name, **{k: (copy.copy(v) if isinstance(v, dataclasses.Field) else v)
                                       for k, v in body.items()}}
        made[kind] = deco(type(name, base, ns))
    return made


def outcome(fn, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the type of error is what is compared
        return "error", type(exc).__name__


SHAPES = [
    ({}, {"a": "int", "b": "str"}),
    ({"c": 3, "d": None}, {"a": "int", "c": "int", "d": "str | None"}),
    ({"tags": field(default_factory=tuple), "extra": field(default_factory=dict, compare=False)},
     {"name": "str", "tags": "tuple", "extra": "dict"}),
    ({"hidden": field(default=0, repr=False), "nohash": field(default=1, hash=False)},
     {"x": "int", "hidden": "int", "nohash": "int"}),
    ({"only": field(default=5, compare=False)}, {"only": "int"}),
    ({}, {}),
]

VALUES = [0, 1, -3, "a", "", None, (1, 2), (), [1], {"k": 1}, 1.5, float("nan"), True]


def argument_sets(cls: type, rng: random.Random) -> list[tuple[tuple, dict]]:
    names = [f.name for f in dataclasses.fields(cls)]
    sets: list[tuple[tuple, dict]] = [((), {}), ((1,), {}), ((), {"zzz": 1})]
    for _ in range(40):
        n_pos = rng.randint(0, len(names) + 1)
        args = tuple(rng.choice(VALUES) for _ in range(n_pos))
        kw_names = rng.sample(names, rng.randint(0, len(names))) if names else []
        kwargs = {k: rng.choice(VALUES) for k in kw_names}
        sets.append((args, kwargs))
    return sets


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_construction_equality_hash_repr_and_helpers_match_dataclass(shape):
    body, annotations = SHAPES[shape]
    classes = twins(body, annotations)
    rng = random.Random(shape)
    d_cls, r_cls = classes["dataclass"], classes["record"]
    assert [f.name for f in dataclasses.fields(d_cls)] == [f.name for f in dataclasses.fields(r_cls)]
    assert d_cls.__match_args__ == r_cls.__match_args__ and dataclasses.is_dataclass(r_cls)
    built: list[tuple[Any, Any]] = []
    for args, kwargs in argument_sets(d_cls, rng):
        d = outcome(d_cls, *args, **kwargs)
        r = outcome(r_cls, *args, **kwargs)
        assert d[0] == r[0], (args, kwargs, d, r)
        if d[0] == "error":
            assert d[1] == r[1]
            continue
        built.append((d[1], r[1]))
    assert built, "no argument set constructed an instance"
    for (d1, r1), (d2, r2) in itertools.product(built, repeat=2):
        assert (d1 == d2) == (r1 == r2) and (d1 != d2) == (r1 != r2)
        assert (d1 == r2) is False and (r1 == d2) is False  # never equal across classes
        dh, rh = outcome(hash, d1), outcome(hash, r1)
        assert dh[0] == rh[0] and (dh[0] == "error" or dh[1] == rh[1])  # the same tuple is hashed
    for d, r in built:
        assert repr(d) == repr(r)
        assert dataclasses.asdict(d) == dataclasses.asdict(r) or repr(dataclasses.asdict(d)) == repr(dataclasses.asdict(r))
        assert repr(dataclasses.astuple(d)) == repr(dataclasses.astuple(r))
        for f in dataclasses.fields(d_cls):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(r, f.name, 1)
            with pytest.raises(dataclasses.FrozenInstanceError):
                delattr(r, f.name)
            changed_d = outcome(dataclasses.replace, d, **{f.name: 7})
            changed_r = outcome(dataclasses.replace, r, **{f.name: 7})
            assert changed_d[0] == changed_r[0] and repr(changed_d[1]) == repr(changed_r[1])
        with pytest.raises(dataclasses.FrozenInstanceError):
            r.not_a_field = 1
        assert repr(copy.copy(r)) == repr(r) and repr(copy.deepcopy(r)) == repr(r)
        assert (r == 5) is False and r != "text"


def test_pattern_matching_and_post_init_and_inheritance():
    seen: dict[str, list] = {"dataclass": [], "record": []}

    def post_init_for(kind):
        def __post_init__(self):  # noqa: N807 - the dataclass hook
            seen[kind].append(self.a)
            if self.a == "bad":
                raise ValueError("refused")
        return __post_init__

    parents = {}
    for kind, deco in DECORATORS.items():
        ns = {"__doc__": "P.", "__annotations__": {"a": "str", "b": "int"}, "b": 2, "__module__": __name__,
              "__qualname__": "P", "__post_init__": post_init_for(kind)}
        parents[kind] = deco(type("P", (), ns))
    children = twins({"c": field(default_factory=list)}, {"c": "list"}, "Child",
                     bases=(parents["dataclass"], parents["record"]))
    for cls in children.values():
        obj = cls("x", 3, [1])
        match obj:
            case cls(a, b, c):  # positional patterns use __match_args__
                assert (a, b, c) == ("x", 3, [1])
        with pytest.raises(ValueError):
            cls("bad")
        assert cls("y") == cls("y") and cls("y").c is not cls("y").c  # a fresh default each time
    assert seen["dataclass"] == seen["record"] == ["x", "bad", "y", "y", "y", "y"]
    same_fields = twins({}, {}, "SameFields", bases=(parents["dataclass"], parents["record"]))
    for kind in DECORATORS:  # a subclass instance never equals a parent instance, even with equal fields
        assert parents[kind]("z") != same_fields[kind]("z") and same_fields[kind]("z") != parents[kind]("z")
    assert repr(children["dataclass"]("q")) == repr(children["record"]("q"))


def test_a_class_keeps_its_own_methods_and_a_record_needs_a_docstring():
    @frozen_record
    class Own:
        """Has its own repr."""

        a: int

        def __repr__(self) -> str:
            return "own"

    assert repr(Own(1)) == "own" and Own(1) == Own(1)
    with pytest.raises(TypeError, match="docstring"):
        frozen_record(type("NoDoc", (), {"__annotations__": {"a": "int"}, "__module__": __name__}))
    with pytest.raises(TypeError, match="keyword-only"):
        frozen_record(type("Kw", (), {"__doc__": "k.", "__annotations__": {"a": "int"}, "a": field(kw_only=True),
                                      "__module__": __name__}))


def test_the_package_records_are_records_and_compare_by_value():
    from adapterhub.manifest import parse_manifest
    from adapterhub.names import parse_hub_reference, parse_requirement

    assert parse_requirement("sst2-houlsby>=1") == parse_requirement("sst2-houlsby >= 1")
    ref = parse_hub_reference("hf:org/repo@main:sub")
    assert dataclasses.replace(ref, revision="v1") == parse_hub_reference("hf:org/repo@v1:sub")
    assert len({ref, parse_hub_reference("hf:org/repo@main:sub")}) == 1
    from support.manifest_samples import manifest_with

    m = parse_manifest(manifest_with("rec-test", "1.0.0"))
    again = parse_manifest(manifest_with("rec-test", "1.0.0"))
    assert m == again and m is not again and repr(m) == repr(again)
    assert dataclasses.replace(m, version="1.0.1") != m
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.version = "2"

"""Hostile or broken indexes: deep dependency chains, huge closures, yanked members of a fusion.

Chains and fan-outs live in an in-memory index (a backend serving generated lines), so a 1,500-deep
chain costs milliseconds; nothing here depends on the bundled index.
"""

from __future__ import annotations

import warnings

import pytest
from support.manifest_samples import manifest_with

from adapterhub.errors import DependencyCycleError, DependencyLimitError, YankedError
from adapterhub.jsonio import dumps_canonical
from adapterhub.manifest import parse_manifest
from adapterhub.registry import (
    Index,
    YankedVersionWarning,
    add_release,
    entry_path,
    init_index,
    open_index,
    resolve_closure,
    set_yanked,
)
from adapterhub.registry.entries import manifest_sha256
from adapterhub.registry.resolver import MAX_CLOSURE_SIZE, MAX_DEPENDENCY_DEPTH


class MemoryBackend:
    """An index held in a dict: relative path -> bytes (what ``LocalBackend`` reads from disk)."""

    location = "memory://index"

    def __init__(self, releases: dict[str, list[dict]]) -> None:
        self.files = {"config.json": b'{"index_format": "1.0", "name": "memory"}'}
        for name, deps in releases.items():
            raw = manifest_with(name, "1.0.0", deps)
            line = {"v": 1, "name": name, "version": "1.0.0", "yanked": False,
                    "manifest_sha256": manifest_sha256(raw), "manifest": raw}
            self.files[entry_path(name)] = (dumps_canonical(line) + "\n").encode()

    def read(self, relative: str) -> bytes | None:
        return self.files.get(relative)


def chain(length: int) -> Index:
    names = [f"chain-{i:04d}" for i in range(length)]
    deps = {n: [{"name": names[i + 1]}] if i + 1 < length else [] for i, n in enumerate(names)}
    return Index(MemoryBackend(deps), validate_entries=False)


def test_a_1500_deep_chain_is_a_typed_error_not_a_recursion_error() -> None:
    """Regression: the recursive closure raised RecursionError on a 1,500-deep chain."""
    with pytest.raises(DependencyLimitError, match=f"deeper than the {MAX_DEPENDENCY_DEPTH} levels") as err:
        resolve_closure(chain(1500), ["chain-0000"])
    assert "chain-0000 -> chain-0001" in str(err.value)


def test_chains_up_to_the_limit_resolve_dependencies_first() -> None:
    order = resolve_closure(chain(MAX_DEPENDENCY_DEPTH), ["chain-0000"])
    assert [r.name for r in order] == [f"chain-{i:04d}" for i in reversed(range(MAX_DEPENDENCY_DEPTH))]
    assert order[0].required_by == tuple(f"chain-{i:04d}" for i in range(MAX_DEPENDENCY_DEPTH - 1))


def test_a_closure_larger_than_the_cap_is_refused() -> None:
    leaves = {f"leaf-{i:04d}": [] for i in range(MAX_CLOSURE_SIZE)}
    index = Index(MemoryBackend({"wide-root": [{"name": n} for n in leaves], **leaves}), validate_entries=False)
    with pytest.raises(DependencyLimitError, match=f"past {MAX_CLOSURE_SIZE} releases"):
        resolve_closure(index, ["wide-root"])


def test_a_long_cycle_is_reported_whole() -> None:
    names = [f"ring-{i:02d}" for i in range(40)]
    index = Index(MemoryBackend({n: [{"name": names[(i + 1) % 40]}] for i, n in enumerate(names)}),
                  validate_entries=False)
    with pytest.raises(DependencyCycleError) as err:
        resolve_closure(index, ["ring-00"])
    assert err.value.cycle == [*names, "ring-00"]


@pytest.fixture
def fusion_index(tmp_path):
    root = init_index(tmp_path / "index", "test")
    for name in ("task-a", "task-b"):
        add_release(root, parse_manifest(manifest_with(name, "1.0.0")))
    add_release(root, parse_manifest(manifest_with("fusion-ab", "1.0.0", [{"name": "task-a", "spec": "==1.0.0"},
                                                                          {"name": "task-b", "spec": "==1.0.0"}])))
    add_release(root, parse_manifest(manifest_with("fusion-ranged", "2.0.0", [{"name": "task-a", "spec": ">=1,<2"}])))
    set_yanked(root, "task-a", "1.0.0", "trained on leaked test data")
    return root


def test_a_fusion_pinning_a_yanked_member_is_refused_naming_the_fusion(fusion_index) -> None:
    """Regression: the error suggested the very pin the fusion already has and did not name the fusion.
    A member yanked after the fusion was published must not come back through the fusion's pin."""
    with pytest.raises(YankedError) as err:
        resolve_closure(open_index(fusion_index), ["fusion-ab"])
    text = str(err.value)
    assert text.startswith("fusion-ab 1.0.0 requires task-a==1.0.0: only yanked versions match: 1.0.0")
    assert "trained on leaked test data" in text and "pin one exactly" not in text
    assert "pull task-a==1.0.0 yourself" in (err.value.hint or "")


def test_a_user_pin_of_a_yanked_version_is_used_with_a_warning(fusion_index) -> None:
    with pytest.warns(YankedVersionWarning, match="task-a 1.0.0 is yanked"):
        order = resolve_closure(open_index(fusion_index), ["task-a==1.0.0"])
    assert [(r.name, r.version) for r in order] == [("task-a", "1.0.0")]


def test_a_fusion_whose_range_matches_only_yanked_members_is_an_error_naming_both(fusion_index) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(YankedError) as err:
            resolve_closure(open_index(fusion_index), ["fusion-ranged"])
    text = str(err.value)
    assert text.startswith("fusion-ranged 2.0.0 requires task-a<2,>=1: only yanked versions match: 1.0.0")
    assert "pin one exactly" not in text  # the user cannot pin a dependency of someone else's release

"""``hf:ORG/REPO[@REVISION][:SUBFOLDER]``: one parser (names layer) for every command that takes a requirement."""

from __future__ import annotations

import pytest

from adapterhub.errors import InvalidNameError
from adapterhub.names import HubReference, is_hub_reference, parse_hub_reference, parse_requirement


@pytest.mark.parametrize("text, expected", [
    ("hf:org/repo", HubReference("org/repo")),
    ("hf:org/repo@main", HubReference("org/repo", "main")),
    ("hf:Org.X/re_po-1@v1.0:adapters/sst2", HubReference("Org.X/re_po-1", "v1.0", "adapters/sst2")),
    ("hf:org/repo:sub/", HubReference("org/repo", None, "sub")),
    ("hf:org/repo@refs/pr/1", HubReference("org/repo", "refs/pr/1")),
    ("  hf:org/repo@" + "a" * 40 + " ", HubReference("org/repo", "a" * 40)),
])
def test_forms(text, expected):
    ref = parse_hub_reference(text)
    assert ref == expected
    assert parse_hub_reference(str(ref)) == ref
    assert is_hub_reference(text)


@pytest.mark.parametrize("text, words", [
    ("hf:org", "cannot parse Hub reference"),
    ("hf:org/repo/x", "cannot parse"),
    ("hf:org/repo:../up", "relative path"),
    ("hf:org/repo:a//b", "relative path"),
    ("hf:org/repo@a..b", "not a valid git revision"),
    ("hf:datasets/org/index", "only model repositories"),
    ("hf:", "cannot parse"),
])
def test_bad_forms_say_what_is_wrong(text, words):
    with pytest.raises(InvalidNameError, match=words):
        parse_hub_reference(text)


def test_a_bare_repo_id_suggests_the_hf_form():
    with pytest.raises(InvalidNameError) as info:
        parse_requirement("org/repo@main")
    assert "hf:org/repo@main" in str(info.value)


def test_index_requirements_refuse_hf_references_by_name():
    with pytest.raises(InvalidNameError, match="Hub reference"):
        parse_requirement("hf:org/repo")

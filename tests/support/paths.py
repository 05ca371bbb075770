"""Where things are, for tests in any directory: the repository, its docs and fixtures, the shared data."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root (``tests/support/paths.py`` is two levels below it)."""
TESTS = REPO / "tests"
DOCS = REPO / "docs"
FIXTURES = TESTS / "fixtures"
REFERENCE = FIXTURES / "reference"
SHARED = REPO.parent / "shared"
"""``../shared`` beside the repository (data and references); tests skip with a message when it is absent."""

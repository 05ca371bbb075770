"""Helpers shared by the tests: tiny models, tolerances, sample manifests, servers (fixtures live in conftest.py)."""

"""The ``role`` a file of an adapter plays (weights, head, config, card...), guessed from its name.

Used wherever a manifest lists files it did not write: ``adapterhub init`` and derived manifests.
"""

from __future__ import annotations

CARD_FILE = "README.md"
TOKENIZER_NAMES = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "spiece", "sentencepiece")


def guess_role(path: str) -> str:
    """The manifest ``role`` a file most likely plays, from its name."""
    name = path.rsplit("/", 1)[-1].lower()
    if path == CARD_FILE:
        return "card"
    if name.endswith((".safetensors", ".bin", ".pt", ".pth")):
        return "head" if name.startswith("head") or "head" in name.split(".")[0].split("_") else "weights"
    if name.startswith(TOKENIZER_NAMES):
        return "tokenizer"
    if name.endswith(".json"):
        return "config"
    return "other"

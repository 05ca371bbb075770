"""An adapter in memory, whatever directory format it came from: its tensors, config, head and base facts.

Every directory reader (:mod:`adapterhub.runtime.formats`) produces an :class:`AdapterPackage`, and
the handle attaches only packages, so the model never sees a format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..manifest.types import Manifest
from .heads import HEAD_FILE

WEIGHTS_FILE = "adapter.safetensors"
ADAPTER_FILES = (WEIGHTS_FILE, HEAD_FILE)
"""The weight files ``write_adapter_dir`` owns: one left from an earlier save that this one does not write goes."""


@dataclass
class BaseFacts:
    """What an adapter says about its base model (checked before anything is attached)."""

    model_type: str
    hidden_size: int
    num_hidden_layers: int
    fingerprint: str | None = None
    id: str | None = None
    revision: str | None = None
    num_decoder_layers: int | None = None
    """Encoder-decoder bases: decoder layers, numbered globally after the encoder's (docs/manifest.md)."""

    @classmethod
    def of(cls, binding: Any, fingerprint: str | None = None, id: str | None = None,
           revision: str | None = None) -> BaseFacts:
        """The shape facts of a bound model (``adapterhub.runtime.arch.Binding``)."""
        return cls(binding.model_type, binding.hidden_size, binding.num_hidden_layers, fingerprint, id, revision,
                   binding.num_decoder_layers)

    @classmethod
    def from_manifest(cls, bm: Any) -> BaseFacts:
        """The facts a manifest's ``base_model`` states."""
        return cls(bm.model_type, bm.hidden_size, bm.num_hidden_layers, bm.fingerprint, bm.id, bm.revision,
                   bm.num_decoder_layers)

    def shape_differs(self, other: BaseFacts) -> bool:
        """True when the shape facts disagree (a decoder count only one side states is not a disagreement)."""
        if (self.model_type, self.hidden_size, self.num_hidden_layers) != (
                other.model_type, other.hidden_size, other.num_hidden_layers):
            return True
        return None not in (self.num_decoder_layers, other.num_decoder_layers) and \
            self.num_decoder_layers != other.num_decoder_layers

    def describe(self) -> str:
        """``model_type=t5 hidden_size=512 num_hidden_layers=6 [num_decoder_layers=6]`` for messages."""
        text = f"model_type={self.model_type} hidden_size={self.hidden_size} num_hidden_layers={self.num_hidden_layers}"
        return text + (f" num_decoder_layers={self.num_decoder_layers}" if self.num_decoder_layers else "")

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``base_model`` object (``id`` is ``unknown`` when not known)."""
        out: dict[str, Any] = {"id": self.id or "unknown", "model_type": self.model_type,
                               "hidden_size": self.hidden_size, "num_hidden_layers": self.num_hidden_layers}
        for key in ("num_decoder_layers", "revision", "fingerprint"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass
class AdapterPackage:
    method: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    base: BaseFacts
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    head_type: str | None = None
    num_labels: int | None = None
    name: str | None = None
    manifest: Manifest | None = None
    source: str = "<memory>"

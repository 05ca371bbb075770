"""The base of every method's typed config, and the per-layer reduction factor rule they share.

A method's config type lives in the method's own module (``runtime/methods/<method>.py``), beside
the math that reads it; its fields mirror ``config_<method>`` in the manifest schema (a test holds
them to it). A config keeps exactly what was stated (``None`` = not stated), so a manifest
round-trips byte for byte; :meth:`MethodConfig.effective` fills in the method's documented
defaults (``DEFAULTS``, or :meth:`MethodConfig.presets` when they depend on a variant).
Torch-free on purpose: a config is data, not layer math.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ...errors import SchemaError, SchemaProblem

ReductionFactor = float | Mapping[str, float]


@dataclass(frozen=True)
class MethodConfig:
    """Shared behaviour: what was stated, the defaults, and both merged."""

    DEFAULTS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_stated(cls, config: Mapping[str, Any]) -> MethodConfig:
        """The typed config of a schema-valid stated config (JSON lists become tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})

    def stated(self) -> dict[str, Any]:
        """Only the keys the manifest stated."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def presets(self) -> dict[str, Any]:
        return dict(self.DEFAULTS)

    def effective(self) -> dict[str, Any]:
        """Every key, with the method's (and variant's) defaults where the manifest is silent."""
        out = self.presets()
        out.update(self.stated())
        return out


def reduction_factor_for_layer(rf: ReductionFactor, layer: int) -> float:
    """The reduction factor of one layer: a number, or a ``{"<layer>": n, "default": n}`` mapping."""
    if isinstance(rf, Mapping):
        if str(layer) in rf:
            return float(rf[str(layer)])
        if "default" in rf:
            return float(rf["default"])
        raise SchemaError("<adapter config>", [SchemaProblem(
            "/adapter/config/reduction_factor",
            f"reduction_factor has no entry for layer {layer} and no 'default'; add \"{layer}\" or \"default\"")])
    return float(rf)

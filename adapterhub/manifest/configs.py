"""Per-method adapter configs, mirroring ``config_<method>`` in the manifest schema.

A config keeps exactly what the manifest says (``None`` = not stated) so a manifest round-trips
byte for byte; :meth:`effective` fills in the method's documented defaults. The defaults of
bottleneck and Compacter variants are the ``adapters`` library presets, so an adapter moved between the
two tools means the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

ReductionFactor = float | Mapping[str, float]


@dataclass(frozen=True)
class MethodConfig:
    """Shared behaviour: defaults, and the per-layer reduction factor rule."""

    DEFAULTS: ClassVar[dict[str, Any]] = {}

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
        raise KeyError(f"reduction_factor has no entry for layer {layer} and no 'default'")
    return float(rf)


_BOTTLENECK_COMMON = {
    "ln_before": False, "ln_after": False, "use_gating": False, "dropout": 0.0, "leave_out": (),
    "original_ln_after": True, "residual_before_ln": True, "scaling": 1.0, "init_weights": "bert",
}
BOTTLENECK_PRESETS: dict[str, dict[str, Any]] = {
    "houlsby": {**_BOTTLENECK_COMMON, "locations": ("attention", "ffn"), "original_ln_before": False,
                "non_linearity": "swish", "reduction_factor": 16},
    "pfeiffer": {**_BOTTLENECK_COMMON, "locations": ("ffn",), "original_ln_before": True,
                 "non_linearity": "relu", "reduction_factor": 16},
    "parallel": {**_BOTTLENECK_COMMON, "locations": ("ffn",), "original_ln_before": False,
                 "non_linearity": "relu", "reduction_factor": 2, "init_weights": "mam_adapter", "scaling": 4.0},
}


@dataclass(frozen=True)
class BottleneckConfig(MethodConfig):
    variant: str
    reduction_factor: ReductionFactor | None = None
    non_linearity: str | None = None
    locations: tuple[str, ...] | None = None
    original_ln_before: bool | None = None
    original_ln_after: bool | None = None
    residual_before_ln: bool | None = None
    ln_before: bool | None = None
    ln_after: bool | None = None
    scaling: float | str | None = None
    use_gating: bool | None = None
    init_weights: str | None = None
    dropout: float | None = None
    leave_out: tuple[int, ...] | None = None

    def presets(self) -> dict[str, Any]:
        return dict(BOTTLENECK_PRESETS[self.variant])


_PHM_DEFAULTS = {
    "reduction_factor": 32, "non_linearity": "gelu", "phm_dim": 4, "phm_rank": 1, "shared_phm_rule": True,
    "factorized_phm_rule": False, "shared_W_phm": False, "factorized_phm_W": True, "phm_bias": True,
    "phm_c_init": "normal", "phm_init_range": 0.0001, "hypercomplex_nonlinearity": "glorot-uniform",
    "learn_phm": True, "dropout": 0.0, "leave_out": (),
}
COMPACTER_PRESETS: dict[str, dict[str, Any]] = {
    "compacter": {**_PHM_DEFAULTS, "placement": "houlsby"},
    "compacter++": {**_PHM_DEFAULTS, "placement": "pfeiffer"},
}


@dataclass(frozen=True)
class CompacterConfig(MethodConfig):
    variant: str
    reduction_factor: ReductionFactor | None = None
    non_linearity: str | None = None
    phm_dim: int | None = None
    phm_rank: int | None = None
    shared_phm_rule: bool | None = None
    factorized_phm_rule: bool | None = None
    shared_W_phm: bool | None = None  # noqa: N815 - the adapters library's key, kept for interop
    factorized_phm_W: bool | None = None  # noqa: N815
    phm_bias: bool | None = None
    phm_c_init: str | None = None
    phm_init_range: float | None = None
    hypercomplex_nonlinearity: str | None = None
    learn_phm: bool | None = None
    dropout: float | None = None
    leave_out: tuple[int, ...] | None = None

    def presets(self) -> dict[str, Any]:
        return dict(COMPACTER_PRESETS[self.variant])


@dataclass(frozen=True)
class LoraConfig(MethodConfig):
    """LoRA and DoRA share one config; the method name says whether the magnitude vector exists."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "dropout": 0.0, "target_modules": ("q", "v"), "use_rslora": False, "init_weights": "lora", "leave_out": (),
    }
    r: int
    alpha: float
    dropout: float | None = None
    target_modules: tuple[str, ...] | None = None
    use_rslora: bool | None = None
    init_weights: str | None = None
    leave_out: tuple[int, ...] | None = None

    @property
    def scaling(self) -> float:
        """alpha / r, or alpha / sqrt(r) for rsLoRA (Kalajdzievski 2023)."""
        if self.use_rslora:
            return self.alpha / (self.r**0.5)
        return self.alpha / self.r


@dataclass(frozen=True)
class LohaConfig(MethodConfig):
    """LoHa as PEFT's ``LoHaConfig`` (scaling ``alpha / r``); targets are our neutral names."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "target_modules": ("q", "v"), "rank_dropout": 0.0, "module_dropout": 0.0, "init_weights": True,
        "leave_out": (),
    }
    r: int
    alpha: float
    target_modules: tuple[str, ...] | None = None
    rank_dropout: float | None = None
    module_dropout: float | None = None
    init_weights: bool | None = None
    leave_out: tuple[int, ...] | None = None


@dataclass(frozen=True)
class IA3Config(MethodConfig):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "target_modules": ("k", "v", "ffn_out"), "feedforward_modules": ("ffn_out",), "leave_out": (),
    }
    target_modules: tuple[str, ...] | None = None
    feedforward_modules: tuple[str, ...] | None = None
    leave_out: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PrefixTuningConfig(MethodConfig):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "prefix_length": 30, "bottleneck_size": 512, "non_linearity": "tanh", "flat": False, "dropout": 0.0,
        "encoder_prefix": True, "cross_prefix": True, "leave_out": (),
    }
    prefix_length: int | None = None
    bottleneck_size: int | None = None
    non_linearity: str | None = None
    flat: bool | None = None
    dropout: float | None = None
    encoder_prefix: bool | None = None
    cross_prefix: bool | None = None
    leave_out: tuple[int, ...] | None = None


@dataclass(frozen=True)
class BitDeltaConfig(MethodConfig):
    DEFAULTS: ClassVar[dict[str, Any]] = {"packing": "uint8-lsb-first", "scale_distilled": False, "leave_out": ()}
    target_modules: tuple[str, ...]
    packing: str | None = None
    scale_distilled: bool | None = None
    leave_out: tuple[int, ...] | None = None


@dataclass(frozen=True)
class CodaConfig(MethodConfig):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "reduction_factor": 16, "non_linearity": "relu", "k": 0.25, "router_iterations": 20,
        "router_epsilon": 0.1, "leave_out": (),
    }
    reduction_factor: ReductionFactor | None = None
    non_linearity: str | None = None
    k: float | None = None
    router_iterations: int | None = None
    router_epsilon: float | None = None
    leave_out: tuple[int, ...] | None = None


FUSION_PRESETS: dict[str, dict[str, Any]] = {
    "static": {"key": True, "query": True, "value": False, "query_before_ln": False, "regularization": False,
               "residual_before": False, "temperature": False, "value_before_softmax": True,
               "value_initialized": False, "dropout_prob": None},
    "dynamic": {"key": True, "query": True, "value": True, "query_before_ln": False, "regularization": True,
                "residual_before": False, "temperature": False, "value_before_softmax": True,
                "value_initialized": True, "dropout_prob": None},
}


@dataclass(frozen=True)
class FusionConfig(MethodConfig):
    members: tuple[str, ...]
    variant: str | None = None
    key: bool | None = None
    query: bool | None = None
    value: bool | None = None
    query_before_ln: bool | None = None
    regularization: bool | None = None
    residual_before: bool | None = None
    temperature: bool | None = None
    value_before_softmax: bool | None = None
    value_initialized: bool | None = None
    dropout_prob: float | None = None

    def presets(self) -> dict[str, Any]:
        return {"variant": "dynamic", **FUSION_PRESETS[self.variant or "dynamic"]}


@dataclass(frozen=True)
class CompositionConfig(MethodConfig):
    """A published composition: the block tree in its JSON form (``adapterhub.compose.to_json``).

    Kept as JSON (names are the dependencies' published names); :meth:`block` builds the blocks.
    """

    composition: Any

    def block(self) -> Any:
        """The :mod:`adapterhub.blocks` tree (raises ``CompositionError`` if malformed)."""
        from ..blocks import from_json, validate

        block = from_json(self.composition)
        validate(block)
        return block


METHOD_CONFIGS: dict[str, type[MethodConfig]] = {
    "bottleneck": BottleneckConfig,
    "compacter": CompacterConfig,
    "lora": LoraConfig,
    "dora": LoraConfig,
    "ia3": IA3Config,
    "loha": LohaConfig,
    "prefix_tuning": PrefixTuningConfig,
    "bitdelta": BitDeltaConfig,
    "coda": CodaConfig,
    "fusion": FusionConfig,
    "composition": CompositionConfig,
}
"""The one table from a manifest's ``adapter.method`` to its config type."""

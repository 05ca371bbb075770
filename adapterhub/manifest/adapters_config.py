"""The ``adapters`` library's configs (bottleneck ``BnConfig``, ``LoRAConfig``, ``PrefixTuningConfig``) as ours.

Torch-free: the directory reader (:mod:`adapterhub.runtime.formats.adapters_lib` and the methods' ``from_adapters``),
the archived-index importer (:mod:`adapterhub.registry.archived`, whose custom architectures are BnConfig
dicts) and derived manifests (:mod:`adapterhub.manifest.derive`) share it. Keys with no equivalent in our runtime are refused with the key named, except where the
library's own math makes them a no-op (``adapter_residual_before_ln`` only moves the residual add
across ``ln_after``; without ``ln_after`` both orders are the same sum).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from packaging.version import InvalidVersion, Version

from ..errors import SchemaError, SchemaProblem
from .config_values import config_float, config_layers, config_size

ACTIVATION_RENAME = {"gelu": "gelu_new", "gelu_orig": "gelu"}
"""v1-era activation names (configs saved without ``version``) -> today's."""

BOTTLENECK_KEYS = ("original_ln_before", "original_ln_after", "residual_before_ln", "ln_before", "ln_after",
                   "use_gating", "dropout")
COMPACTER_KEYS = ("phm_dim", "phm_rank", "shared_phm_rule", "factorized_phm_rule", "shared_W_phm",
                  "factorized_phm_W", "phm_bias", "phm_c_init", "phm_init_range", "hypercomplex_nonlinearity",
                  "learn_phm")


SOURCE = "adapter_config.json"


def unsupported(pointer: str, message: str, where: str = "adapter_config.json") -> SchemaError:
    """The typed refusal of a config value adapterhub cannot represent."""
    return SchemaError(where, [SchemaProblem(pointer, message)])


def bottleneck_config(cfg: dict[str, Any], versioned: bool, where: str = "adapter_config.json",
                      pointer: str = "/config") -> tuple[str, dict[str, Any]]:
    """``(method, config)`` for a BnConfig dict; ``versioned`` = saved by a library that records ``version``."""
    if cfg.get("inv_adapter") is not None:
        raise unsupported(f"{pointer}/inv_adapter", f"inv_adapter={cfg['inv_adapter']!r} (invertible adapters) "
                          "is not supported by adapterhub's runtime", where)
    if cfg.get("cross_adapter"):
        raise unsupported(f"{pointer}/cross_adapter", "cross_adapter=True is not supported by adapterhub's runtime",
                          where)
    if cfg.get("adapter_residual_before_ln") and cfg.get("ln_after"):
        raise unsupported(f"{pointer}/adapter_residual_before_ln", "adapter_residual_before_ln=True together with "
                          "ln_after=True is not supported by adapterhub's runtime", where)
    if cfg.get("residual_before_ln", True) not in (True, False):
        raise unsupported(f"{pointer}/residual_before_ln", "'post_add' is not supported", where)
    if cfg.get("scaling", 1.0) == "channel":
        raise unsupported(f"{pointer}/scaling", "'channel' scaling is not supported", where)
    act = cfg.get("non_linearity", "relu")
    if not versioned:
        act = ACTIVATION_RENAME.get(act, act)
    locations = [loc for loc, flag in (("attention", cfg.get("mh_adapter")), ("ffn", cfg.get("output_adapter"))) if flag]
    rf = cfg.get("reduction_factor", 16)
    config: dict[str, Any]
    if cfg.get("phm_layer"):
        method = "compacter"
        variant = "compacter" if cfg.get("mh_adapter") else "compacter++"
        config = {"variant": variant, "reduction_factor": rf, "non_linearity": act}
        config.update({k: cfg[k] for k in COMPACTER_KEYS if k in cfg})
        expected = ["attention", "ffn"] if variant == "compacter" else ["ffn"]
        if locations != expected or bool(cfg.get("original_ln_before")) != (variant == "compacter++"):
            raise unsupported(pointer, "Compacter with a non-preset placement is not supported", where)
        if cfg.get("dropout"):
            config["dropout"] = cfg["dropout"]
    else:
        method = "bottleneck"
        variant = "parallel" if cfg.get("is_parallel") else ("houlsby" if cfg.get("mh_adapter") else "pfeiffer")
        config = {"variant": variant, "reduction_factor": rf, "non_linearity": act, "locations": locations}
        config.update({k: cfg[k] for k in BOTTLENECK_KEYS if k in cfg})
        scaling = cfg.get("scaling", 1.0)
        config["scaling"] = scaling if scaling == "learned" else config_float(scaling, "scaling", where, f"{pointer}/scaling")
        if cfg.get("init_weights") in ("bert", "mam_adapter", "houlsby"):
            config["init_weights"] = cfg["init_weights"]
    leave_out = config_layers(cfg.get("leave_out"), "leave_out", where, f"{pointer}/leave_out")
    if leave_out:
        config["leave_out"] = leave_out
    if isinstance(rf, dict):
        config["reduction_factor"] = {str(k): v for k, v in rf.items()}
    return method, config


def library_version(meta: dict[str, Any]) -> Version | None:
    """The ``adapters`` version that saved a config (``None`` when unrecorded or unreadable)."""
    raw = meta.get("version")
    if not isinstance(raw, str):
        return None
    try:
        return Version(raw.removeprefix("adapters."))
    except InvalidVersion:
        return None


def lora_config(cfg: dict[str, Any], meta: dict[str, Any], locations: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """``(method, config)`` for a ``LoRAConfig``: LoRA, or IA3 for ``composition_mode="scale"``.

    ``locations``: the library's LoRA locations (``intermediate``, ``output``) -> our slot keys on the base's
    family (``adapterhub.families.Family.library_lora_locations``). Configs saved before adapters 1.1.0
    with ``r != alpha`` get ``alpha := r`` (library PR #770)."""
    if cfg.get("use_gating"):
        raise unsupported("/config/use_gating", "gated LoRA is not supported")
    if cfg.get("vera_d") is not None or cfg.get("vera_b") is not None:
        raise unsupported("/config/vera_d", "VeRA is not supported")
    if cfg.get("use_dora"):
        raise unsupported("/config/use_dora", "the adapters library's DoRA differs from PEFT's (unscaled norm, "
                                              "scaled bias); adapterhub implements PEFT's DoRA only")
    scale_mode = cfg.get("composition_mode", "add") == "scale"
    r = config_size(cfg.get("r", 8), "r", SOURCE, "/config/r")
    alpha = config_float(cfg.get("alpha", 8), "alpha", SOURCE, "/config/alpha")
    version = library_version(meta)
    if not scale_mode and (version is None or version < Version("1.1.0")) and r != alpha:
        alpha = float(r)
    targets: list[str] = []
    if cfg.get("selfattn_lora", True):
        targets += [m for m in ("q", "k", "v") if m in (cfg.get("attn_matrices") or [])]
    if cfg.get("intermediate_lora"):
        targets.append(locations["intermediate"])
    if cfg.get("output_lora"):
        targets.append(locations["output"])
    config: dict[str, Any]
    if scale_mode:
        method, config = "ia3", {"target_modules": targets, "feedforward_modules": []}
    else:
        method, config = "lora", {"r": r, "alpha": alpha, "target_modules": targets}
        if cfg.get("dropout"):
            config["dropout"] = cfg["dropout"]
    leave_out = config_layers(cfg.get("leave_out"), "leave_out", SOURCE, "/config/leave_out")
    if leave_out:
        config["leave_out"] = leave_out
    return method, config


def prefix_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Our prefix-tuning config for a ``PrefixTuningConfig`` as the library trains it (reparametrized)."""
    if cfg.get("use_gating"):
        raise unsupported("/config/use_gating", "gated prefix tuning (UniPELT) is not supported")
    out: dict[str, Any] = {"prefix_length": config_size(cfg.get("prefix_length", 30), "prefix_length", SOURCE,
                                                        "/config/prefix_length"),
                           "bottleneck_size": config_size(cfg.get("bottleneck_size", 512), "bottleneck_size", SOURCE,
                                                          "/config/bottleneck_size"),
                           "non_linearity": str(cfg.get("non_linearity") or "tanh").lower(),
                           "flat": bool(cfg.get("flat", False))}
    if cfg.get("dropout"):
        out["dropout"] = config_float(cfg["dropout"], "dropout", SOURCE, "/config/dropout")
    for key in ("encoder_prefix", "cross_prefix"):
        if key in cfg:
            out[key] = bool(cfg[key])
    if cfg.get("leave_out"):
        out["leave_out"] = config_layers(cfg["leave_out"], "leave_out", SOURCE, "/config/leave_out")
    return out


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """The stated config of prefix tuning's inference form (``bottleneck_size`` and ``non_linearity`` no longer
    apply): what a library prefix adapter becomes once read."""
    out = {k: v for k, v in config.items() if k not in ("bottleneck_size", "non_linearity")}
    out["flat"] = True
    return out


FUSION_KEYS = ("key", "query", "value", "query_before_ln", "regularization", "residual_before", "temperature",
               "value_before_softmax", "value_initialized")


def fusion_config(cfg: dict[str, Any], members: list[str]) -> dict[str, Any]:
    """Our fusion config for the library's fusion ``config`` over ``members`` (names as the manifest lists them)."""
    config: dict[str, Any] = {"members": list(members)}
    for k in FUSION_KEYS:
        if k in cfg:
            config[k] = bool(cfg[k])
    if cfg.get("dropout_prob") is not None:
        config["dropout_prob"] = config_float(cfg["dropout_prob"], "dropout_prob", "adapter_fusion_config.json",
                                              "/config/dropout_prob")
    return config

"""PEFT's ``adapter_config.json`` as our method and stated config: the one home of its keys, torch-free.

Two readers share it: the runtime's PEFT directory reader (:mod:`adapterhub.runtime.formats.peft`, which
takes the targets from the tensor names) and derived manifests (:mod:`adapterhub.manifest.derive`,
which take them from the config through :mod:`adapterhub.manifest.peft_targets`). Everything a PEFT
config can say that changes what the adapter computes is either translated here or refused with a
typed error naming the key; keys that only steer training are ignored. Per-module ranks and alphas
(``rank_pattern``/``alpha_pattern``) are looked up as PEFT does (:func:`module_scalars`) and stated as one
``r``/``alpha`` (:func:`lora_ranks`); the table of every field is in ``docs/manifest.md``, "PEFT config fields".
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..errors import SchemaError, SchemaProblem
from .config_values import config_float, config_size
from .untrusted_regex import MAX_PATTERN, untrusted_pattern

SOURCE = "adapter_config.json (PEFT)"
PEFT_TYPES = {"LORA": "lora", "IA3": "ia3", "LOHA": "loha"}
"""PEFT ``peft_type`` -> our method (``LORA`` with ``use_dora`` is ``dora``) for derived manifests; the
runtime's reader also accepts the ``peft_type`` of any method registered later (``Method.peft_claims``)."""

PROMPT_LEARNING = ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING", "MULTITASK_PROMPT_TUNING", "CPT")
PROMPT_LEARNING_WHY = (
    "PEFT's prompt learning feeds its virtual tokens to the model as past keys/values (or input embeddings), so the "
    "model numbers the real tokens from the prefix length on (their position ids shift); adapterhub's prefix "
    "tuning (the adapters library's) prepends keys and values without shifting positions, so the outputs would "
    "differ: convert the adapter with the adapters library or train it with adapterhub")


def peft_type_refusal(peft_type: Any, supported: str) -> str:
    """Why a PEFT ``peft_type`` cannot be read (``supported``: the types that can, for the message)."""
    if peft_type in PROMPT_LEARNING:
        return f"{peft_type!r} is not supported: {PROMPT_LEARNING_WHY}"
    return f"{peft_type!r} is not supported ({supported} are; DoRA is LORA with use_dora)"


REFUSED_KEYS: dict[str, str] = {
    "layer_replication": "layer_replication duplicates base layers, which adapterhub never changes",
    "target_parameters": "LoRA on parameters (target_parameters) is not supported; adapterhub targets projections",
    "trainable_token_indices": "trainable_token_indices trains embedding rows of the frozen base, which "
                               "adapterhub never changes",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens) is not supported",
    "use_qalora": "QA-LoRA (use_qalora) is not supported",
    "megatron_config": "Megatron parallel layers (megatron_config) are not supported",
    "lora_bias": "LoRA with trained biases (lora_bias) is not supported",
}
"""Keys that change what a PEFT adapter computes (or where) beyond what adapterhub can place, by the
message of their refusal; refused when set to anything but their off value (None, False, {} or [])."""


def peft_unsupported(pointer: str, message: str) -> SchemaError:
    """The typed refusal of a PEFT config value or tensor adapterhub cannot represent."""
    return SchemaError(SOURCE, [SchemaProblem(pointer, message)])


def peft_method(cfg: Any) -> str:
    """Our method for a PEFT ``adapter_config.json`` (parsed); refused when PEFT's type has none."""
    if not isinstance(cfg, dict):
        raise peft_unsupported("/", f"adapter_config.json is a JSON {type(cfg).__name__}, not an object")
    peft_type = cfg.get("peft_type")
    method = PEFT_TYPES.get(peft_type) if isinstance(peft_type, str) else None
    if method is None:
        raise peft_unsupported("/peft_type", peft_type_refusal(peft_type, ", ".join(PEFT_TYPES)))
    return "dora" if method == "lora" and cfg.get("use_dora") else method


def check_peft_config(cfg: dict[str, Any]) -> None:
    """Refuse (typed, naming the key) what adapterhub cannot represent, before any tensor is read.

    Keyed on ``peft_type`` (not on :func:`peft_method`), so a method registered in the runtime beyond
    :data:`PEFT_TYPES` is checked too."""
    for key, why in REFUSED_KEYS.items():
        if cfg.get(key) not in (None, False, {}, []):
            raise peft_unsupported(f"/{key}", why)
    peft_type = cfg.get("peft_type")
    for key in PATTERN_KEYS:
        if cfg.get(key) not in (None, {}) and (peft_type != "LORA" or not isinstance(cfg[key], dict)):
            raise peft_unsupported(f"/{key}", f"{key} is read for LORA as an object of module patterns only "
                                   f"(peft_type {peft_type!r}, {type(cfg[key]).__name__})")
    if peft_type == "LORA" and base_changing_init(cfg.get("init_lora_weights")):
        raise peft_unsupported("/init_lora_weights", f"init_lora_weights={cfg['init_lora_weights']!r} subtracts the "
                               "initial update from the base weights, so the adapter computes what it was trained to "
                               "only on that residual base (PEFT redoes it when loading), never on the base as "
                               "published; convert it to a plain LoRA with PEFT (save_pretrained with "
                               "path_initial_model_for_weight_conversion)")
    if peft_type == "LORA" and cfg.get("bias", "none") != "none":
        raise peft_unsupported("/bias", f"bias={cfg.get('bias')!r}: LoRA with trained biases is not supported")
    if peft_type == "LORA":
        stated_rank(cfg.get("r"), "/r")
        stated_number(cfg, "lora_alpha", 8)
    if peft_type == "IA3" and isinstance(cfg.get("feedforward_modules"), str):
        raise peft_unsupported("/feedforward_modules", "regular-expression feedforward_modules are not supported")


def stated_rank(value: Any, pointer: str, what: str = "r") -> int:
    """``value`` as a rank (an integer in 1..:data:`~.config_values.MAX_SIZE`), else the typed refusal."""
    return config_size(value, what, SOURCE, pointer)


def stated_number(cfg: dict[str, Any], key: str, default: float, pointer: str | None = None,
                  value: Any = None) -> float:
    """``cfg[key]`` (or ``value`` when given; ``default`` when absent or null) as a finite float."""
    value = cfg.get(key) if value is None else value
    return config_float(default if value is None else value, key, SOURCE, pointer)


def peft_scalars(cfg: dict[str, Any]) -> dict[str, Any]:
    """The method's stated config keys other than targets and ``leave_out`` (which say *where*, not *what*)."""
    method = peft_method(cfg)
    config: dict[str, Any] = {}
    if method in ("lora", "dora"):
        config = {"r": stated_rank(cfg.get("r"), "/r"), "alpha": stated_number(cfg, "lora_alpha", 8)}
        if cfg.get("use_rslora"):
            config["use_rslora"] = True
        if cfg.get("lora_dropout"):
            config["dropout"] = stated_number(cfg, "lora_dropout", 0)
    elif method == "loha":
        config = {"r": stated_rank(cfg.get("r", 8), "/r"), "alpha": stated_number(cfg, "alpha", 8)}
        for key in ("rank_dropout", "module_dropout"):
            if cfg.get(key):
                config[key] = stated_number(cfg, key, 0)
    return config


PATTERN_KEYS = ("rank_pattern", "alpha_pattern")


def pattern_value(cfg: dict[str, Any], key: str, module: str, default: Any) -> Any:
    r"""PEFT's per-module value: the first pattern ``P`` of ``cfg[key]`` (in order) for which ``(.*\.)?(P)$`` matches
    the module's name (relative to the model PEFT wrapped), else ``default``."""
    for pattern, value in (cfg.get(key) or {}).items():
        if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
            raise peft_unsupported(f"/{key}", f"{str(pattern)[:80]!r} is not a regular expression of at most "
                                   f"{MAX_PATTERN} characters")
        if untrusted_pattern(rf"(.*\.)?({pattern})$", f"/{key}", SOURCE).match(module):
            return value
    return default


def module_scalars(cfg: dict[str, Any], module: str) -> tuple[int, float]:
    """``(r, lora_alpha)`` PEFT gives the LoRA on ``module`` (``rank_pattern``/``alpha_pattern`` over the defaults)."""
    r = pattern_value(cfg, "rank_pattern", module, cfg.get("r"))
    alpha = pattern_value(cfg, "alpha_pattern", module, cfg.get("lora_alpha", 8))
    return (stated_rank(r, "/rank_pattern", f"{module}: r"),
            stated_number({}, f"{module}: lora_alpha", 8, "/alpha_pattern", alpha))


def lora_ranks(cfg: dict[str, Any], scalars: Collection[tuple[int, float]]) -> tuple[dict[str, Any], bool]:
    """Our ``r``/``alpha`` for a PEFT LoRA whose placed modules have these ``(r, alpha)``, and whether each module's
    own scale must be folded into its ``lora_B`` (with its factors zero-padded to the largest rank).

    One pair (patterns or not) is stated as it is. Several cannot be one adapter-wide ``r`` and ``alpha``: then
    ``r`` is the largest rank and ``alpha = r`` (scale 1; the caller turns rsLoRA off), each module's ``B`` carries its own
    ``alpha_m / r_m`` (or ``/ sqrt(r_m)``) and its factors are padded with zero rank components, which add nothing:
    the same update ``s_m B_m A_m``, rounded once more."""
    pairs = set(scalars)
    if len(pairs) <= 1:
        r, alpha = next(iter(pairs)) if pairs else (cfg.get("r"), stated_number(cfg, "lora_alpha", 8))
        return {"r": r, "alpha": alpha}, False
    top = max(r for r, _ in pairs)
    return {"r": top, "alpha": float(top)}, True


BASE_CHANGING_INITS = ("pissa", "corda", "olora", "loftq", "lora_ga")
"""``init_lora_weights`` values (``pissa_niter_<n>`` and ``corda`` variants by prefix) whose initialisation rewrites the
base layer's weight; the others (``True``, ``False``, ``gaussian``, ``eva``, ``orthogonal``, ``mica``) only set the
starting factors, which a saved adapter's tensors replace."""


def base_changing_init(value: Any) -> bool:
    """Whether PEFT's ``init_lora_weights=value`` changes the base weights (so loading redoes it)."""
    return isinstance(value, str) and value.lower().startswith(BASE_CHANGING_INITS)

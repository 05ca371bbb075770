"""What every adapter method provides: the per-method contract, and the small hook helpers they share.

One home per method. A method's module (``runtime/methods/<method>.py``) holds everything that is
specific to it, and one line in ``REGISTRY`` (``runtime/methods/__init__.py``) makes it known to the
manifest checks, the runtime, averaging and merging, and the PEFT / ``adapters`` directory readers.
The contract, as class attributes and (class)methods of :class:`Method`:

* ``name`` -- the manifest's ``adapter.method``; the schema lists it and has a ``config_<name>``
  definition (or reuses one, as ``dora`` reuses ``config_lora``).
* ``config_type`` -- a frozen :class:`~.config.MethodConfig` dataclass whose fields are exactly the
  schema definition's properties (``None`` = not stated), with the defaults (``DEFAULTS`` or
  ``presets()``). A test holds schema, config type and registry together.
* ``training_only`` -- config keys that do not change what a trained adapter computes (dropout,
  init schemes...): adapters that differ only there can still be averaged.
* the math: ``shapes``/``init`` (fresh tensors), ``site_fns`` (or ``attach``) for the forward pass;
  weight-space methods also ``folds``/``merge``/``unmerge`` (``weight_space = True``).
* ``combine`` -- the method's weight-space algebra for ``Average``/``WeightedSum``
  (:mod:`adapterhub.compose.average` asks it; the default refuses with a typed error), with
  ``combine_same_shapes``, ``combine_truncates`` and ``combine_reads_base`` saying what it needs.
* ``peft_type`` with ``peft_claims``/``check_peft_config``/``from_peft``/``to_peft`` -- the mapping to
  and from a PEFT directory (:mod:`adapterhub.runtime.formats.peft` is the generic driver);
  ``peft_type = None``: no PEFT form.
* ``adapters_architecture`` with ``from_adapters`` -- reading an ``adapters``-library directory of that
  ``architecture`` (:mod:`adapterhub.runtime.formats.adapters_lib` is the generic driver).

A method instance is bound to one adapter config on one model (:class:`Binding`). It declares
the tensors it needs (names and shapes, checked before anything is attached), initialises fresh
ones for training, and describes its forward math as one function per insertion point
(:meth:`Method.site_fns`, see :mod:`adapterhub.runtime.sites`) reading its parameters from a
:class:`TensorTree`. The runtime installs one hook per site that evaluates the active composition
(a single adapter, a stack, a fusion, ...). A method that cannot be described per site (it changes
the attention itself) overrides :meth:`Method.attach` instead and can then only be stacked.
Weight-space methods can also fold themselves into the base weights (``merge``) and back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from ...errors import AdapterStateError, CompositionError, SchemaError, SchemaProblem
from ...manifest.io import layer_index_problems
from ...manifest.peft_config import check_peft_config, peft_unsupported
from ..arch import Binding
from ..folds import Fold
from ..sites import SiteFn, SiteKey, first_tensor, in_place_ok, install, replace_output
from ..tensors import TensorTree
from .config import MethodConfig

if TYPE_CHECKING:
    from ..package import AdapterPackage

__all__ = ["Combined", "Method", "MethodConfig", "PeftPiece", "peft_unsupported", "SiteFn", "SiteKey", "activation", "check_layer_indices",
           "first_tensor", "in_place_ok", "replace_output"]


@dataclass
class Combined:
    """What a method's ``combine`` returns: the new adapter's tensors and stated config, and how it was made."""

    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    """Keys added to the soup record (``form``, ``rank``, errors of a truncation...)."""
    slot_errors: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PeftPiece:
    """One tensor of a PEFT directory as it lands on one of our slots (a fused projection gives one per slot)."""

    leaf: str
    """PEFT's leaf name (``lora_B.weight``, ``ia3_l``...)."""
    value: torch.Tensor
    """The whole tensor PEFT stored for the module."""
    module_path: str
    """The module's path without PEFT's ``base_model.model.`` prefix."""
    prefix: str
    """Our tensor prefix for the slot, ``layers.<i>.<slot>``."""
    target: str
    """The architecture-neutral target name (``q``, ``ffn_out``...)."""
    part: int
    parts: int

    def rows(self) -> torch.Tensor:
        """This slot's share of ``value`` along its first dimension (all of it for a plain projection)."""
        n = self.value.shape[0] // self.parts
        return self.value[self.part * n:(self.part + 1) * n]


class Method:
    """Base of one adapter method (one module per method under ``runtime/methods``)."""

    name: ClassVar[str]
    config_type: ClassVar[type[MethodConfig]]
    weight_space: ClassVar[bool] = False
    training_only: ClassVar[frozenset[str]] = frozenset()
    combine_same_shapes: ClassVar[bool] = True
    """Ingredients of an average must have the same tensor names and shapes (LoRA ranks may differ)."""
    combine_truncates: ClassVar[bool] = False
    """``Average(..., rank=k)`` can truncate the result to rank ``k``."""
    combine_reads_base: ClassVar[str | None] = None
    """Why ``combine`` needs the base model's weights (``binding``), or None when it does not."""
    peft_type: ClassVar[str | None] = None
    adapters_architecture: ClassVar[str | None] = None

    def __init__(self, config: dict[str, Any], binding: Binding) -> None:
        refused = binding.family.refusal(self.name)
        if refused is not None:
            raise refused
        self.config = config
        self.binding = binding
        check_layer_indices(config, binding)
        self.validate()

    def validate(self) -> None:
        """Raise a typed error if the config cannot be realised on this model (no side effects)."""

    def shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def dtypes(self) -> dict[str, torch.dtype]:
        """Tensors that must have one exact (non-float) dtype, kept as is on attach; all others are float."""
        return {}

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def site_fns(self, tree: TensorTree) -> dict[SiteKey, SiteFn] | None:
        """``{site: fn(value, aux, inplace) -> value'}``, or None if the method attaches its own hooks."""
        return None

    def attach(self, tree: TensorTree) -> list[RemovableHandle]:
        """Hooks for this adapter alone (methods with :meth:`site_fns` get them from the site installer)."""
        fns = self.site_fns(tree)
        if fns is None:
            raise NotImplementedError
        return install(self.binding, {k: (lambda v, aux, fn=fn: fn(v, aux, True)) for k, fn in fns.items()})

    def trainable(self, tree: TensorTree) -> list[nn.Parameter]:
        return list(tree.parameters())

    def count_parameters(self, tree: TensorTree, trainable_only: bool = False) -> int:
        """What ``num_parameters(name)`` reports: stored elements (BitDelta counts sign bits)."""
        return sum(p.numel() for p in tree.parameters() if p.requires_grad or not trainable_only)

    def folds(self) -> dict[SiteKey, Fold]:
        """How merging rewrites each projection this adapter acts on (keys as in :meth:`site_fns`).

        The runtime uses it to refuse a merge, an unmerge or an activation whose merged weights would
        not compute the active composition (:mod:`adapterhub.runtime.folds`). Empty: nothing to fold.
        """
        return {}

    def merge(self, tree: TensorTree) -> None:
        raise AdapterStateError(f"method {self.name!r} works in activation space and cannot be merged",
                                hint=f"merge is defined for {', '.join(weight_space_methods())}")

    def unmerge(self, tree: TensorTree) -> None:
        raise AdapterStateError(f"method {self.name!r} cannot be merged, so it cannot be unmerged")

    # --- weight-space algebra (Average / WeightedSum) -------------------------------------------------
    @classmethod
    def combine(cls, pkgs: Sequence[AdapterPackage], coeffs: list[float], *, rank: int | None,
                binding: Binding | None) -> Combined:
        """``W + sum_i c_i (W_i - W)`` as one new adapter of this method (see ``docs/soups.md``)."""
        raise CompositionError(f"averaging is not defined for method {cls.name!r}",
                               hint="merge the adapters into the weights one after another instead")

    # --- PEFT directories ---------------------------------------------------------------------------
    peft_leaves: ClassVar[tuple[str, ...]] = ()
    """PEFT tensor leaves this method reads (any other tensor is a saved module, i.e. a head)."""

    @classmethod
    def peft_claims(cls, cfg: dict[str, Any]) -> bool:
        """Whether a PEFT ``adapter_config.json`` is this method's."""
        return cls.peft_type is not None and cfg.get("peft_type") == cls.peft_type

    @classmethod
    def check_peft_config(cls, cfg: dict[str, Any]) -> None:
        """Refuse (typed) PEFT options this method cannot represent, before any tensor is read."""
        check_peft_config(cfg)

    @classmethod
    def from_peft(cls, cfg: dict[str, Any], pieces: list[PeftPiece]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(stated config without ``leave_out``, our tensors) from a PEFT config and its tensors."""
        raise peft_unsupported("/peft_type", f"adapterhub reads no PEFT directories of method {cls.name!r}")

    def to_peft(self, tree: TensorTree, modules: dict[str, list[Any]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """({``<module path>.<leaf>``: tensor}, method-specific ``adapter_config.json`` keys) for PEFT.

        ``modules`` maps each module path to this adapter's targets on it (several for a fused projection).
        """
        raise peft_unsupported("/peft_type", f"adapterhub writes no PEFT directories of method {self.name!r}")

    # --- adapters-library directories ---------------------------------------------------------------
    @classmethod
    def from_adapters(cls, cfg: dict[str, Any], meta: dict[str, Any], tensors: dict[str, torch.Tensor], name: str,
                      binding: Binding) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
        """(method, stated config, our tensors) of an ``adapters``-library adapter of ``adapters_architecture``."""
        raise SchemaError("adapter_config.json (adapters library)", [SchemaProblem(
            "/config/architecture", f"adapterhub reads no adapters-library directories of method {cls.name!r}")])

    # --- adapters this one works over (a fusion layer's members) --------------------------------------
    depends_on: ClassVar[str | None] = None
    """The config key listing attached adapters this method works over, in order (fusion: ``members``).

    The handle resolves those names to attached adapters before :meth:`build`, refuses to remove one
    while a dependent is attached, and saves them as the dependent's manifest dependencies (published
    names). None: the method stands alone."""

    @classmethod
    def build(cls, config: MethodConfig, binding: Binding, dependencies: Sequence[tuple[str, Method]]) -> Method:
        """The method object for validated ``config``; ``dependencies``: (local name, method) per ``depends_on``."""
        return cls(config.effective(), binding)


def weight_space_methods() -> list[str]:
    """Names of the weight-space methods defined (every registered method is a subclass of :class:`Method`)."""
    seen: dict[str, None] = {}
    todo: list[type[Method]] = [Method]
    while todo:
        cls = todo.pop(0)
        if cls.weight_space and "name" in vars(cls):
            seen[cls.name] = None
        todo.extend(cls.__subclasses__())
    return list(seen)


def check_layer_indices(config: dict[str, Any], binding: Any) -> None:
    """Refuse layer indices the bound model does not have (the manifest's check, at add/load time)."""
    problems = layer_index_problems(config, binding.num_hidden_layers, binding.num_decoder_layers)
    if problems:
        raise SchemaError("<adapter config>", problems)


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The adapters library's activation for ``name`` (``swish`` is SiLU, ``gelu`` the erf form)."""
    from transformers.activations import get_activation  # deferred: transformers only when a method runs

    key = name.lower()
    if key == "identity":
        return lambda x: x
    if key == "leakyrelu":
        return F.leaky_relu
    if key == "gelu_orig":
        key = "gelu_python"
    return get_activation(key)

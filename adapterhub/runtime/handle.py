"""The user's handle on a model instance with adapters: add, load, activate, train, save, merge.

Every operation validates everything first (base model facts, config, tensor names and shapes,
head) and only then touches the model, so a failure never leaves a model half-modified. Adapter
parameters live under ``model.adapterhub_adapters.<name>`` (an instance attribute, never a class
patch) so ``model.parameters()``, optimizers and ``Trainer`` see them; hooks do the math.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..blocks import leaf_names, summary, top_chain, used_names
from ..errors import (
    AdapterStateError,
    IncompatibleBaseError,
    InvalidNameError,
    MergeConflictError,
    SchemaError,
    SchemaProblem,
)
from ..manifest import dependency_digest
from ..manifest.derive import derived_reference
from ..manifest.types import Manifest
from ..names import is_repo_id, manifest_name
from .activation import Active
from .activation import activate as compile_and_install
from .arch import Binding, bind
from .attached import AttachedAdapter, Entry, Published, resolve_members
from .composition import composition_block
from .config import check_config, stated_json
from .fingerprint import CONTAINER, base_fingerprint
from .folds import Fold
from .formats import composition_manifest, detect_format, read_adapter_dir, write_adapter_dir
from .head_routing import head_owner
from .heads import check_head, head_info, head_parameters, load_head, saved_head
from .merge_check import check_merged, check_unmerge_order
from .methods import REGISTRY, Method, MethodConfig
from .package import AdapterPackage, BaseFacts
from .tensors import TensorTree, check_tensors

_HANDLE_ATTR = "_adapterhub_handle"


class AdapterModel:
    """Adapters on one transformers model instance (see ``docs/runtime.md``)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.binding: Binding = bind(model)
        self._fingerprint: str | None = None
        self._entries: dict[str, Entry] = {}
        self._active: tuple[Any, ...] = ()
        self._composition: Active | None = None
        self._head_owner: str | None = None  # the adapter whose head the model's head module holds
        self._merge_order: list[str] = []  # merged adapters, in the order their folds were applied
        self._base_head: dict[str, torch.Tensor] | None = None  # the model's own head, before any adapter's
        self.last_mix_weights: list[torch.Tensor] = []
        """Per-example EMEA weights ``[batch, layer, member]`` of the last forward (one per EMEA Mix)."""
        if not isinstance(getattr(model, CONTAINER, None), nn.ModuleDict):
            model.add_module(CONTAINER, nn.ModuleDict())
        object.__setattr__(model, _HANDLE_ATTR, self)

    # --- facts ------------------------------------------------------------------------------------
    @property
    def container(self) -> nn.ModuleDict:
        return getattr(self.model, CONTAINER)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the frozen base (computed once; merged adapters are excluded by design)."""
        if self._fingerprint is None:
            if any(e.merged for e in self._entries.values()):
                raise AdapterStateError("cannot fingerprint the base while an adapter is merged", hint="unmerge first")
            self._fingerprint = base_fingerprint(self.model)
        return self._fingerprint

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self._entries)

    @property
    def merged(self) -> tuple[str, ...]:
        """Adapters folded into the base weights, in the order they were merged."""
        return tuple(self._merge_order)

    def adapter(self, name: str) -> AttachedAdapter:
        """A read-only snapshot of attached adapter ``name``: method, typed config, published name and
        version, whether it brought a head, whether it is merged, what it works over (see ``docs/runtime.md``)."""
        return self.entry(name).view()

    @property
    def attached(self) -> Mapping[str, AttachedAdapter]:
        """Every attached adapter by local name, in attach order (a read-only snapshot)."""
        return MappingProxyType({n: e.view() for n, e in self._entries.items()})

    def entry(self, name: str) -> Entry:
        """The live record of attached adapter ``name`` (method object, tensors, head).

        Runtime-internal: for code that runs or exports an adapter's tensors (the composition compiler,
        head routing, the PEFT exporter). Read :meth:`adapter` instead; changing an entry bypasses
        every check the handle makes.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise AdapterStateError(f"no adapter named {name!r} is attached",
                                    hint=f"attached: {sorted(self._entries) or 'none'}") from None

    def method_name(self, name: str) -> str:
        """The method of attached adapter ``name`` (``lora``, ``bottleneck``, ``fusion``...)."""
        return self.entry(name).method.name

    def folds(self, name: str) -> dict[tuple, Fold]:
        """How merging adapter ``name`` rewrites each projection (see :mod:`adapterhub.runtime.folds`)."""
        return self.entry(name).method.folds()

    @property
    def active(self) -> tuple[Any, ...]:
        """What ``activate`` was given: adapter names and/or composition blocks (several = a Stack)."""
        return self._active

    def base_facts(self) -> BaseFacts:
        name = getattr(getattr(self.model, "config", None), "_name_or_path", "") or ""
        ident = name if is_repo_id(name) else None
        return BaseFacts.of(self.binding, self.fingerprint, ident)

    def num_parameters(self, name: str | None = None, trainable_only: bool = False) -> int:
        """Parameters of one adapter, or of the base model (``name=None``) without any adapter."""
        if name is not None:
            entry = self.entry(name)
            return entry.method.count_parameters(entry.tree, trainable_only)
        return sum(p.numel() for n, p in self.model.named_parameters()
                   if CONTAINER not in n and (p.requires_grad or not trainable_only))

    def parameter_counts(self) -> dict[str, int]:
        """``{"base": n, <adapter>: n, ...}`` (head parameters are counted in the base)."""
        return {"base": self.num_parameters(), **{n: self.num_parameters(n) for n in self._entries}}

    # --- adding -----------------------------------------------------------------------------------
    def add(self, name: str, method: str, *, seed: int = 0, activate: bool = True, **config: Any) -> None:
        """Add a freshly initialised adapter (``config`` keys are the manifest schema's).

        ``activate=True`` makes it the only active adapter (as :meth:`load`); compose with :meth:`activate`.
        """
        self._check_new_name(name)
        typed, impl = self._build(method, config, "<adapter config>")
        generator = torch.Generator().manual_seed(seed)
        self._attach(name, impl, typed, impl.init(generator), None, activate)

    def add_fusion(self, name: str, members: list[str] | tuple[str, ...], *, seed: int = 0, activate: bool = True,
                   **config: Any) -> None:
        """Add a fresh AdapterFusion layer over attached bottleneck adapters (``variant`` static|dynamic).

        Use it with ``activate(Fuse(*members, fusion=name))`` (or ``activate(name)``).
        """
        self.add(name, "fusion", seed=seed, activate=activate, members=list(members), **config)

    def _build(self, method: str, config: dict[str, Any], source: str,
               manifest: Manifest | None = None) -> tuple[MethodConfig, Method]:
        """Validated typed config and method object.

        A method that works over other adapters (its ``depends_on`` config key, e.g. a fusion layer's
        ``members``) gets them resolved to attached adapters first: names a user typed by local name
        first, names from ``manifest`` by published name first and held to the versions it pins.
        """
        cls = REGISTRY.get(method)
        key = cls.depends_on if cls is not None else None
        if key is None:
            typed = check_config(method, config, tuple(REGISTRY))
            return typed, REGISTRY[method].build(typed, self.binding, ())
        refs = config.get(key)
        pointer = f"/adapter/config/{key}"
        if not isinstance(refs, list | tuple) or not all(isinstance(m, str) for m in refs):
            raise SchemaError(source, [SchemaProblem(pointer, "a list of adapter names")])
        specs = {d.name: d.spec for d in manifest.dependencies or ()} if manifest is not None else {}
        found, missing = resolve_members(refs, specs, self.attached, source=source, role=f"{method} member",
                                         published_first=manifest is not None)
        if missing:
            raise SchemaError(source, [SchemaProblem(
                pointer, f"{missing[0]!r} is not an attached adapter (attached: {sorted(self._entries) or 'none'}); "
                "load it first, or pull it with the adapter that depends on it (adapterhub.compose.load_fusion)")])
        local = [found[r] for r in refs]
        published = [manifest_name(n) for n in local]
        typed = check_config(method, {**config, key: published}, tuple(REGISTRY), dependencies=published)
        typed = dataclasses.replace(typed, **{key: tuple(local)})
        return typed, REGISTRY[method].build(typed, self.binding, [(n, self._entries[n].method) for n in local])

    def load(self, path: str | Path, *, name: str | None = None, force: bool = False,
             activate: bool = True) -> str:
        """Load an adapter directory (adapterhub, ``adapters`` library or PEFT format); returns its name.

        ``force=True`` skips the fingerprint comparison (shape facts are always checked). With
        ``activate=True`` the loaded adapter becomes the one that runs: it **replaces** the active setup
        (as PEFT's ``load_adapter`` + ``set_adapter`` and the ``adapters`` library's
        ``load_adapter(set_active=True)``); stacking it on others is explicit, ``activate("a", name)``.
        With ``activate=False`` nothing that runs changes, not even the prediction head. A published
        composition (a directory or ``adapterhub.json`` of method ``composition``) attaches nothing: it
        activates its block on adapters already attached and returns the composition's name.
        """
        if detect_format(path) == "composition":  # a published composition: activates adapters already attached
            manifest = composition_manifest(path)
            assert manifest is not None
            self.check_base(BaseFacts.from_manifest(manifest.base_model), str(path), force=force)
            block = composition_block(manifest, self.attached, str(path))
            if activate:
                self.activate(block)
            return manifest.name
        pkg = read_adapter_dir(path, self.binding)
        return self.load_package(pkg, name=name, force=force, activate=activate)

    def load_package(self, pkg: AdapterPackage, *, name: str | None = None, force: bool = False,
                     activate: bool = True) -> str:
        """Attach an in-memory package; ``activate`` as in :meth:`load` (the new adapter runs alone)."""
        name = name or pkg.name or "adapter"
        self._check_new_name(name)
        self.check_base(pkg.base, pkg.source, force=True)  # shape facts first: no flag can fix those
        typed, impl = self._build(pkg.method, pkg.config, pkg.source, pkg.manifest)
        check_tensors(impl.shapes(), pkg.tensors, pkg.source, impl.dtypes())
        if pkg.head:
            check_head(self.model, pkg.head, pkg.source)
        # The fingerprint last: its error offers force=True, which is only honest once every shape fits.
        self.check_base(pkg.base, pkg.source, force=force)
        published = _published(pkg.manifest) if pkg.manifest is not None else None
        self._attach(name, impl, typed, pkg.tensors, pkg.head, activate, published)
        return name

    def check_base(self, base: BaseFacts, source: str, *, force: bool = False) -> None:
        """Raise :class:`IncompatibleBaseError` naming both sides when the adapter's base is not this model."""
        mine = BaseFacts.of(self.binding)
        if mine.shape_differs(base):
            raise IncompatibleBaseError(
                f"{source}: adapter was made for {base.describe()}, but this model is {mine.describe()}",
                hint="load it onto the base model named in its manifest")
        if base.fingerprint and not force and base.fingerprint != self.fingerprint:
            raise IncompatibleBaseError(
                f"{source}: adapter base fingerprint {base.fingerprint} (base {base.id or 'unknown'}) differs from "
                f"this model's {self.fingerprint}",
                hint="these are different weights; pass force=True to attach anyway")

    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or "." in name or name in ("base",):
            raise InvalidNameError(f"adapter name {name!r} is not allowed (non-empty, no '.', not 'base')")
        if name in self._entries:
            raise AdapterStateError(f"an adapter named {name!r} is already attached",
                                    hint="remove it first or load under another name")

    def _attach(self, name: str, impl: Method, typed: MethodConfig, tensors: dict[str, torch.Tensor],
                head: dict[str, torch.Tensor] | None, activate: bool, published: Published | None = None) -> None:
        """The only place that modifies the model when adding; everything was validated before."""
        ref = next(self.binding.backbone.parameters())
        owned = {}
        for k, v in tensors.items():  # own every tensor: foreign formats may share storage between slots
            t = v.detach().to(device=ref.device, dtype=ref.dtype if v.is_floating_point() else v.dtype)
            owned[k] = t.clone() if t.data_ptr() == v.data_ptr() or not t.is_contiguous() else t
        tree = TensorTree(owned)
        tree.train(self.model.training)
        entry = Entry(name, impl, typed, tree, head or {}, published=published)
        self.container[name] = tree
        self._entries[name] = entry
        if head and self._head_owner is None:  # the model's own head is live: keep it to restore later
            self._base_head = saved_head(self.model)
        if activate:  # the new adapter replaces the active setup; composing is always explicit
            self.activate(name)

    # --- activation -------------------------------------------------------------------------------
    def activate(self, *blocks: Any) -> None:
        """Make exactly ``blocks`` active: adapter names and/or composition blocks, several = a Stack.

        ``activate("a", "b")`` stacks b on a where they share a site; ``activate(Fuse("a", "b",
        fusion="f"))``, ``Mix``, ``Route``, ``Parallel``, ``Ensemble`` see ``docs/compose.md``. On any
        error the previous composition stays active.
        """
        for b in blocks:
            if isinstance(b, str):
                self.entry(b)
        previous = self._composition
        if previous is not None:
            previous.remove()
        try:
            self._composition = compile_and_install(self, tuple(blocks))
        except Exception:
            if previous is not None:
                self._composition = compile_and_install(self, previous.block or ())
            raise
        self._active = tuple(blocks)
        self._follow_head()

    def _follow_head(self) -> None:
        """Put the head of the active composition's adapter into the model's head module.

        Several loaded task adapters each brought a head, but the model has one head module: activating
        one must score with its head, not with the head loaded last. The outgoing head is first written
        back to its adapter, so what training did to it is kept (and saved by :meth:`package`).
        """
        block = self._composition.block if self._composition is not None else None
        owner = head_owner(self, top_chain(block)) if block is not None else None
        if owner is None or owner == self._head_owner:
            return
        live = head_parameters(self.model)
        if self._head_owner in self._entries:
            old = self._entries[self._head_owner]
            old.head = {k: live[k].detach().clone() for k in old.head}
        elif self._head_owner is None:  # the model's own head goes out: keep it (trained or not) to restore
            self._base_head = saved_head(self.model)
        load_head(self.model, self._entries[owner].head)
        self._head_owner = owner

    def deactivate(self) -> None:
        """Detach every adapter's hooks (merged adapters stay in the weights until ``unmerge``)."""
        self.activate()

    @property
    def composition(self) -> Any:
        """The active composition as one block (names of fusion layers expanded to ``Fuse``), or None."""
        return self._composition.block if self._composition is not None else None

    def _without(self, name: str) -> tuple[Any, ...]:
        """The active blocks minus every top-level item that uses adapter ``name``."""
        return tuple(b for b in self._active if name not in used_names(b))

    # --- training ---------------------------------------------------------------------------------
    def train_adapter(self, name: str) -> list[str]:
        """Freeze everything except adapter ``name`` and the task head; activate it; train mode.

        Returns the names of the trainable parameters (as ``model.named_parameters()`` spells them).
        """
        entry = self.entry(name)
        if entry.merged:
            raise AdapterStateError(f"adapter {name!r} is merged", hint="unmerge it before training")
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in entry.tree.parameters():
            p.requires_grad_(p.is_floating_point())  # integer tensors (BitDelta masks) cannot be trained
        live = head_parameters(self.model)
        for k, p in live.items():  # a task head; an LM head only when the adapter brought its own
            p.requires_grad_(head_info(self.model).type not in (None, "lm") or k in entry.head)
        self.activate(name)
        self.model.train()
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    # --- saving -----------------------------------------------------------------------------------
    def package(self, name: str) -> AdapterPackage:
        entry = self.entry(name)
        info = head_info(self.model)
        head = saved_head(self.model)
        if entry.head:  # the head it came with (an LM head too, e.g. PEFT's modules_to_save=["lm_head"])
            live = head_parameters(self.model) if name == self._head_owner else {}
            head = {k: live.get(k, v).detach().clone() for k, v in entry.head.items()}
        config = stated_json(entry.config)
        if entry.method.depends_on:  # what it works over, by the names a manifest can resolve
            config[entry.method.depends_on] = [self.dependency(m)["name"] for m in entry.depends_on]
        return AdapterPackage(
            method=entry.method.name, config=config, tensors=entry.tree.tensors(),
            base=self.base_facts(), head=head, head_type=info.type,
            num_labels=info.num_labels if head else None, name=name)

    def dependency(self, name: str) -> dict[str, str]:
        """How a saved manifest refers to attached adapter ``name``: its published name, pinned if known."""
        entry = self.entry(name)
        pub = entry.published
        if pub and pub.hub:  # derived from a Hub repo: in no index, found again by its pinned reference
            return {"name": pub.name, "hub": pub.hub, **({"manifest_sha256": pub.manifest_sha256}
                                                          if pub.manifest_sha256 else {}), "role": "member"}
        if pub:
            return {"name": pub.name, "spec": f"=={pub.version}", "role": "member"}
        return {"name": manifest_name(name), "role": "member"}

    def save(self, name: str, directory: str | Path, /, **manifest_fields: Any) -> Path:
        """Write ``adapterhub.json`` + ``adapter.safetensors`` (+ ``head.safetensors``) to ``directory``.

        ``manifest_fields`` may set ``name`` (the published name), ``version``, ``description``,
        ``license``, ``authors`` and ``task``.
        """
        pkg = self.package(name)
        published = manifest_fields.pop("name", None) or manifest_name(name)
        entry = self._entries[name]
        if entry.depends_on and "dependencies" not in manifest_fields:
            manifest_fields["dependencies"] = [self.dependency(m) for m in entry.depends_on]
        return write_adapter_dir(pkg, directory, name=published, **manifest_fields)

    # --- merging ----------------------------------------------------------------------------------
    def merge(self, name: str) -> None:
        """Fold a weight-space adapter (LoRA, DoRA, IA3, BitDelta) into the base weights: zero inference cost.

        Merging never changes what the model computes. ``name`` must be in the active composition (then
        it stays there, now in the weights), or nothing is active (then ``name`` is activated first, head
        included, as ``activate(name)``). When the merged weights could not compute the composition (the
        adapter sits inside a block, or another active adapter acts on a shared projection before it in a
        way that does not commute: IA3 then LoRA, DoRA next to anything) it raises
        :class:`MergeConflictError` and changes nothing.
        """
        entry = self.entry(name)
        if not entry.method.weight_space:
            entry.method.merge(entry.tree)  # raises the method's typed error
        if entry.merged:
            raise AdapterStateError(f"adapter {name!r} is already merged")
        block = self.composition
        if block is not None and name not in leaf_names(block):
            raise MergeConflictError(
                f"adapter {name!r} is not in the active composition {summary(block)}; merging it would add it "
                "to what runs", hint=f"activate what should run first, ah.activate({name!r}) alone or a Stack "
                f"with it, then merge (adapterhub.compose.Merge(ah, {name!r}) runs it alone)")
        check_merged(self, block if block is not None else name, [*self._merge_order, name],
                     doing=f"merging {name!r}", hint=f"keep {name!r} unmerged, or activate a Stack in which it acts "
                     "first on every projection it shares with an unmerged adapter")
        if block is None:
            self.activate(name)
        if self._fingerprint is None:
            self._fingerprint = base_fingerprint(self.model)
        with torch.no_grad():
            entry.method.merge(entry.tree)
        entry.merged = True
        self._merge_order.append(name)
        self.activate(*self._active)

    def unmerge(self, name: str) -> None:
        """Take ``name`` out of the weights again (an active adapter then runs from hooks: same outputs).

        Folds that do not commute come out in the reverse order they went in: otherwise
        :class:`MergeConflictError`, and nothing changes.
        """
        entry = self.entry(name)
        if not entry.merged:
            raise AdapterStateError(f"adapter {name!r} is not merged")
        check_unmerge_order(self, name, self._merge_order)
        check_merged(self, self.composition, [n for n in self._merge_order if n != name],
                     doing=f"unmerging {name!r}", hint="unmerge in the reverse order of merging")
        with torch.no_grad():
            entry.method.unmerge(entry.tree)
        entry.merged = False
        self._merge_order.remove(name)
        self.activate(*self._active)

    def remove(self, name: str) -> None:
        """Detach and delete an adapter (unmerging it first, restoring the head it replaced)."""
        entry = self.entry(name)
        users = [n for n, e in self._entries.items() if name in e.depends_on]
        if users:
            raise AdapterStateError(f"adapter(s) {users} work over adapter {name!r} (" + ", ".join(
                f"{n}: {self._entries[n].method.name}" for n in users) + ")", hint="remove them first")
        if entry.merged:
            self.unmerge(name)
        self.activate(*self._without(name))
        if name == self._head_owner and self._base_head is not None:  # another adapter's head stays put
            load_head(self.model, self._base_head)
            self._head_owner = None
        del self.container[name]
        del self._entries[name]

    # --- misc -------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def __repr__(self) -> str:
        return f"AdapterModel({type(self.model).__name__}, adapters={list(self._entries)}, active={list(self._active)})"


def _published(manifest: Manifest) -> Published:
    """What an adapter loaded from ``manifest`` remembers of it (a Hub-derived one: its reference and digest)."""
    hub = derived_reference(manifest)
    return Published(manifest.name, manifest.version, hub, dependency_digest(manifest) if hub else None)


def wrap(model: nn.Module) -> AdapterModel:
    """The handle of ``model`` (created on first use, then the same object every time)."""
    existing = getattr(model, _HANDLE_ATTR, None)
    return existing if isinstance(existing, AdapterModel) else AdapterModel(model)


"""The architecture table bound to a model instance: its layers, sites and projection slots.

The table itself (:class:`Family` entries, ``FAMILIES``) lives torch-free in :mod:`adapterhub.families`, so
deriving a manifest reads the same entries; this module resolves an entry on a loaded model
(:func:`bind`) and re-exports the table's names its callers use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from ..errors import UnsupportedArchitectureError
from ..families import (
    FAMILIES,
    HIDDEN_SIZE_KEYS,
    LAYER_COUNT_KEYS,
    LIBRARY_BOTTLENECK_SITES,
    LIBRARY_LORA_LOCATIONS,
    SUPPORTED_MODEL_TYPES,
    Family,
    PrefixSite,
    Shape,
    Site,
    Slot,
    Trait,
    config_int,
    families,
    family_for,
    register_family,
    supported_model_types,
    unregister_family,
)

__all__ = ["FAMILIES", "LIBRARY_BOTTLENECK_SITES", "LIBRARY_LORA_LOCATIONS", "SUPPORTED_MODEL_TYPES", "Binding",
           "Family", "Layer", "PrefixSite", "Shape", "Site", "Slot", "Trait", "bind", "families", "family_for",
           "get_submodule", "register_family", "supported_model_types", "unregister_family"]


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule`` that also accepts the empty path (the root itself)."""
    return root if not path else root.get_submodule(path)


@dataclass
class Layer:
    """One transformer layer bound to a model instance, with its global index."""

    index: int
    module: nn.Module
    decoder: bool
    sites: dict[str, Site]
    slots: dict[str, tuple[Slot, ...]]
    shape: Shape
    width: int = 0
    """The hidden size of this layer's stack (CLIP's towers differ; one value for every other family)."""
    config: object = None
    """The config of this layer's stack: its tower's (CLIP), else the model's."""

    def sub(self, path: str) -> nn.Module:
        return get_submodule(self.module, path)


@dataclass
class Binding:
    """A family resolved on one model instance: facts for base checks and all layers.

    Layer indices are global: the encoder's (or only) stack ``0..num_hidden_layers-1``, then, for an
    encoder-decoder family, the decoder's ``num_hidden_layers..`` (``num_decoder_layers`` of them), as
    the ``adapters`` library numbers them and as manifests check them.
    """

    family: Family
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    backbone: nn.Module
    layers: list[Layer]
    conv1d: bool = False
    root: nn.Module | None = None
    num_decoder_layers: int | None = None

    def iter_layers(self, leave_out: tuple[int, ...] | None = ()) -> Iterator[Layer]:
        skip = set(leave_out or ())
        return (layer for layer in self.layers if layer.index not in skip)

    def slot_module(self, layer: Layer, slot: Slot) -> nn.Module:
        return layer.sub(slot.path)

    def slot_shape(self, layer: Layer, slot: Slot) -> tuple[int, int]:
        """(in_features, out_features) of a slot, its slice of a fused projection if any."""
        w = self.slot_module(layer, slot).weight
        fin, fout = (w.shape[0], w.shape[1]) if self.conv1d else (w.shape[1], w.shape[0])
        return int(fin), int(fout // slot.parts)


def _config_int(config: object, *names: str) -> int:
    value = config_int(config, *names)
    if value is None:
        raise UnsupportedArchitectureError(f"model config has none of {names}")
    return value


def bind(model: nn.Module) -> Binding:
    """Resolve the architecture table on a model instance (bare backbone or any task model)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str):
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no config.model_type; adapterhub attaches to transformers models",
            hint="supported: " + ", ".join(supported_model_types()))
    fam = family_for(model_type)
    backbone = getattr(model, "base_model", model)
    layers: list[Layer] = []
    n_layers = 0
    for stack in fam.stacks:
        try:
            container = backbone.get_submodule(stack)
        except AttributeError:
            continue
        decoder = fam.is_decoder_stack(stack)
        tower = fam.tower_config(config, stack)
        width = _config_int(tower, *HIDDEN_SIZE_KEYS)
        for module in container:  # type: ignore[attr-defined]
            shape = fam.shape_of(module, decoder)
            layers.append(Layer(len(layers), module, decoder, fam.sites(shape), fam.slots(shape), shape, width, tower))
        if fam.towers:  # a model of several towers: its layers are all of theirs
            n_layers += _config_int(tower, *LAYER_COUNT_KEYS)
    if not layers:
        raise UnsupportedArchitectureError(f"{type(model).__name__}: no transformer layers found at {fam.stacks}")
    hidden = layers[0].width  # the first tower's for a model of several towers
    n_layers = n_layers or _config_int(config, *LAYER_COUNT_KEYS)
    n_decoder = (_config_int(config, "num_decoder_layers", "decoder_layers")
                 if any(layer.decoder for layer in layers) else None)
    return Binding(fam, model_type, hidden, n_layers, backbone, layers, conv1d=fam.conv1d, root=model,
                   num_decoder_layers=n_decoder)


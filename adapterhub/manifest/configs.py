"""An adapter's config as the manifest states it: validated data, typed by its method in the runtime.

The schema's ``config_<method>`` definitions are the truth, and the manifest is validated against
them before it is built, so here a config is kept as exactly what was stated
(:class:`StatedConfig`): it round-trips byte for byte, and the manifest layer needs to know nothing
about methods. Each method's typed config (fields, defaults, presets) lives with the method in
``adapterhub.runtime.methods`` (``REGISTRY[method].config_type``); the runtime turns a stated config
into it (``adapterhub.runtime.config.typed_config``). The one exception is ``composition``: its
config is a block tree, and blocks are base-level data (:mod:`adapterhub.blocks`), so its typed
config is here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..records import frozen_record

if TYPE_CHECKING:
    from ..blocks import Block


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _frozen(v) for k, v in value.items()}
    return value


@frozen_record
class StatedConfig(Mapping[str, Any]):
    """A method config exactly as stated (JSON arrays as tuples); read keys as attributes or items.

    ``config.variant`` / ``config["variant"]`` give a stated value; a key the manifest did not state
    raises ``AttributeError`` / ``KeyError`` (its default belongs to the method: see ``typed_config``).
    """

    _values: dict[str, Any]

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", {k: _frozen(v) for k, v in values.items()})

    def stated(self) -> dict[str, Any]:
        """Only the keys the manifest stated, in its order."""
        return dict(self._values)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key == "_values":
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"the config does not state {key!r}") from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(repr(sorted(self._values.items(), key=lambda kv: kv[0])))


@frozen_record
class CompositionConfig:
    """A published composition: the block tree in its JSON form (``adapterhub.blocks.to_json``).

    Kept as JSON (names are the dependencies' published names); :meth:`block` builds the blocks.
    """

    composition: Any

    def stated(self) -> dict[str, Any]:
        return {"composition": self.composition}

    def block(self) -> Block:
        """The :mod:`adapterhub.blocks` tree (raises ``CompositionError`` if malformed)."""
        from ..blocks import from_json, validate  # deferred: a manifest that is no composition skips them

        block = from_json(self.composition)
        validate(block)
        return block


AdapterConfig = StatedConfig | CompositionConfig
"""What ``Manifest.adapter.config`` holds."""

"""Adapters on frozen transformers models: ``AdapterModel`` / ``wrap`` (this package imports torch).

See ``docs/runtime.md``. ``import adapterhub`` stays torch-free; only ``adapterhub.runtime`` (and
``adapterhub.runtime.formats``) import torch.
"""

from .arch import (
    SUPPORTED_MODEL_TYPES,
    Family,
    PrefixSite,
    Site,
    Slot,
    bind,
    register_family,
    unregister_family,
)
from .fingerprint import base_fingerprint
from .formats import export_peft, read_adapter_dir, write_adapter_dir
from .handle import AdapterModel, wrap
from .methods import REGISTRY
from .package import AdapterPackage, BaseFacts

__all__ = [
    "SUPPORTED_MODEL_TYPES", "AdapterModel", "Family", "PrefixSite", "Site", "Slot", "register_family",
    "unregister_family", "AdapterPackage", "BaseFacts", "REGISTRY", "base_fingerprint",
    "bind", "export_peft", "read_adapter_dir", "wrap", "write_adapter_dir",
]

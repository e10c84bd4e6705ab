"""AWQ's clip search with matmuls (quantizers/awq_clip.py) chooses the clips GPTQModel's own search chooses."""

import types

import pytest
import torch

awq_processor = pytest.importorskip("gptqmodel.looper.awq_processor")

from qadvisor.quantizers import awq_clip  # noqa: E402


def _processor(sym: bool):
    own = types.SimpleNamespace(qcfg=types.SimpleNamespace(group_size=128, bits=4, sym=sym))
    own._pseudo_quantize_tensor_into = awq_processor.AWQProcessor._pseudo_quantize_tensor_into.__get__(own)
    return own


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("sym", [False, True])
def test_the_matmul_search_chooses_the_librarys_clips(dtype, sym):
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(128, 384, generator=gen) * torch.rand(128, 1, generator=gen)).to(dtype)
    feats = torch.randn(300, 384, generator=gen).to(dtype)
    theirs = awq_processor.AWQProcessor._compute_best_clip(_processor(sym), w, feats)
    mine = awq_clip.compute_best_clip(_processor(sym), w, feats)
    assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
    same = (mine == theirs).float().mean().item()
    # fp32: the same sums in another order; bf16: the library rounds each product first, so near-ties may part
    assert same == 1.0 if dtype == torch.float32 else same > 0.95
    own = _processor(sym)  # where they part, the search's own objective, summed exactly, is as good
    assert _error(own, w, feats, mine) == pytest.approx(_error(own, w, feats, theirs), rel=1e-3)


def _error(own, w: torch.Tensor, feats: torch.Tensor, clip: torch.Tensor) -> float:
    """The mean squared change of each group's outputs with `clip`, in float64."""
    rows, groups = w.shape[0], w.shape[1] // 128
    grouped = w.reshape(rows, 1, groups, 128)
    clamped = torch.clamp(grouped, -clip.reshape(rows, 1, groups, 1), clip.reshape(rows, 1, groups, 1))
    quantized = torch.empty_like(clamped)
    own._pseudo_quantize_tensor_into(clamped, quantized)
    x = feats.double().reshape(1, -1, groups, 128)
    return ((x * quantized.double()).sum(-1) - (x * grouped.double()).sum(-1)).pow(2).mean().item()


def test_the_search_is_patched_only_while_quantizing_and_only_for_the_release_it_mirrors(monkeypatch):
    import gptqmodel

    original = awq_processor.AWQProcessor._compute_best_clip
    with awq_clip.matmul_clip_search():
        assert awq_processor.AWQProcessor._compute_best_clip is awq_clip.compute_best_clip
    assert awq_processor.AWQProcessor._compute_best_clip is original
    monkeypatch.setattr(gptqmodel, "__version__", "9.0.0")
    with awq_clip.matmul_clip_search():
        assert awq_processor.AWQProcessor._compute_best_clip is original

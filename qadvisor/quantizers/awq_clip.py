"""AWQ's clip search with its candidates scored by batched matmuls (GPTQModel 7.6's `_compute_best_clip`).

The library scores each candidate clip by multiplying the activations and the weights elementwise and summing over
each group: a rows × tokens × groups × 128 temporary per candidate, 59 % of awq-int4's quantize time on the bundled
model (54 of 92 s on 2 cores). The same sums as one batched matmul per candidate; the search — its samples, grid,
batches of rows, rounding and choice — as the library writes it. The matmul sums in fp32 before rounding to bf16,
where the elementwise product rounds each term first: in a near-tie the two may choose a neighbouring clip.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

LIBRARY_VERSIONS = ("7.6",)  # the releases whose search this mirrors; any other keeps its own


def _outputs(feats: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`(input_feat * w).sum(-1)` of the library, [rows, tokens, groups], from `feats` [groups, tokens, group size]
    and `w` [rows, 1, groups, group size]."""
    return torch.bmm(feats, w[:, 0].permute(1, 2, 0).to(feats.dtype)).permute(2, 1, 0)


def _best_for_rows(self, w: torch.Tensor, feats: torch.Tensor, n_grid: int, max_shrink: float,
                   scratch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One batch of rows: the clip of each group that keeps its outputs closest, over the library's grid."""
    org_max_val = w.abs().amax(dim=-1, keepdim=True)
    best_max_val = org_max_val.clone()
    min_errs = torch.ones_like(org_max_val) * 1e9
    clamp_slice, quant_slice = (s[: w.shape[0]] for s in scratch)
    org_out = _outputs(feats, w)
    for i_s in range(int(max_shrink * n_grid)):
        max_val = org_max_val * (1 - i_s / n_grid)
        torch.clamp(w, -max_val, max_val, out=clamp_slice)
        self._pseudo_quantize_tensor_into(clamp_slice, quant_slice)
        err = (_outputs(feats, quant_slice) - org_out).pow(2).mean(dim=1).view(min_errs.shape)
        better = err < min_errs
        min_errs[better] = err[better]
        best_max_val[better] = max_val[better]
    return best_max_val


@torch.inference_mode()
def compute_best_clip(self, w: torch.Tensor, input_feat: torch.Tensor, n_grid=20, max_shrink=0.5,
                      n_sample_token=512) -> torch.Tensor:
    """The library's `_compute_best_clip(w, input_feat)`, its sums as matmuls."""
    rows = w.shape[0]
    group_size = self.qcfg.group_size if self.qcfg.group_size > 0 else w.shape[1]
    feats = input_feat.reshape(-1, w.shape[1] // group_size, group_size)  # [tokens, groups, group size]
    dtype = torch.promote_types(input_feat.dtype, w.dtype)  # the library's product is in the wider of the two
    feats = feats[::max(1, feats.shape[0] // n_sample_token)].transpose(0, 1).to(w.device, dtype).contiguous()
    w = w.reshape(rows, 1, -1, group_size)
    batch = 256 if rows % 256 == 0 else 64
    scratch = (torch.empty_like(w[:batch]), torch.empty_like(w[:batch]))
    best = [_best_for_rows(self, w[i: i + batch], feats, n_grid, max_shrink, scratch) for i in range(0, rows, batch)]
    return torch.cat(best, dim=0).squeeze(1)


@contextmanager
def matmul_clip_search():
    """GPTQModel's AWQ processor with `compute_best_clip` while the block runs (a release this does not mirror
    keeps its own search)."""
    import gptqmodel
    from gptqmodel.looper.awq_processor import AWQProcessor

    if not gptqmodel.__version__.startswith(LIBRARY_VERSIONS):
        yield
        return
    original = AWQProcessor._compute_best_clip
    AWQProcessor._compute_best_clip = compute_best_clip
    try:
        yield
    finally:
        AWQProcessor._compute_best_clip = original

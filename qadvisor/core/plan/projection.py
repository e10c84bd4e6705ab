"""From two slice depths to the whole model: time = fixed + layers × per_layer, fitted per method.

A slice of d decoder layers costs, per token, the layers' work plus a fixed part (embedding lookup, final norm,
lm_head, the runtime's own overhead). Two depths give both; the planned model's depth gives the projection. The range
comes from the slowest and fastest repeat at each depth, so a noisy slice shows up as a wide range; where those
repeats allow a per-token time of zero or less, the range has no upper end.
"""

from __future__ import annotations

import itertools

from qadvisor.schemas.plan import Projection
from qadvisor.schemas.result import TrialResult


def fit_line(d1: int, t1: float, d2: int, t2: float) -> tuple[float, float]:
    """(fixed, per_layer) of the line through (d1, t1) and (d2, t2)."""
    per_layer = (t2 - t1) / (d2 - d1)
    return t1 - d1 * per_layer, per_layer


def _times(rate: float, spread: float | None, work: float) -> tuple[float, float, float]:
    """Seconds for `work` tokens at the median rate, and at the fastest and slowest repeats (rate ± spread/2)."""
    half = (spread or 0.0) / 2
    fastest, slowest = rate + half, max(rate - half, rate * 1e-3)
    return work / rate, work / fastest, work / slowest


def _project(depths: tuple[int, int], times: list[tuple[float, float, float]], layers: int, work: float,
             scale: float = 1.0):
    """Projected rate at `layers`, its (low, high) range over the corner cases, and the fitted line; `scale`: the
    planned model's average layer over the layer the slices add (a mix that varies by layer position)."""
    (d1, d2), (a, b) = depths, times
    fixed, per_layer = fit_line(d1, a[0], d2, b[0])
    per_layer *= scale
    totals = [c_fixed + layers * c_per * scale for c_fixed, c_per in
              (fit_line(d1, t1, d2, t2) for t1, t2 in itertools.product(a[1:], b[1:]))]
    total = fixed + layers * per_layer
    rate = work / total if per_layer > 0 and total > 0 else None
    if rate is None:
        return None, None, fixed, per_layer
    # a corner at no time or less: within the repeats' spread the model could run at any speed (no upper end)
    high = None if min(totals) <= 0 else work / min(totals)
    return rate, (work / max(totals), high), fixed, per_layer


MIX_NOTED = 0.005  # a layer mix closer than this to the slices' layer is left alone


def project(results: list[TrialResult], depths: tuple[int, int], layers: int, prompt_tokens: int,
            note: str = "", layer_bytes_ratio: float = 1.0) -> Projection:
    """The projection of one method from its two slice results (shallow first); `note` says anything the method did
    differently on slices (GPTQ rounds to nearest). `layer_bytes_ratio`: the planned model's average layer ÷ the layer the
    slices add, in bytes (llama.cpp's Q4_K_M gives more bits by layer position); decode reads every weight once a
    token, so its per-layer time scales with it; prefill computes and is left as measured."""
    shallow, deep = results
    scale = layer_bytes_ratio if abs(layer_bytes_ratio - 1) >= MIX_NOTED else 1.0
    decode = [_times(r.decode_tok_s, r.decode_tok_s_spread, 1.0) for r in results]
    prefill = [_times(r.prefill_tok_s, r.prefill_tok_s_spread, prompt_tokens) for r in results]
    dec_rate, dec_span, dec_fixed, dec_per = _project(depths, decode, layers, 1.0, scale)
    pre_rate, pre_span, pre_fixed, pre_per = _project(depths, prefill, layers, prompt_tokens)
    basis = (f"measured here on slices of {depths[0]} and {depths[1]} decoder layers at the planned model's shape "
             f"(random weights, the real backend and format); time = fixed + {layers} × per-layer")
    if scale != 1.0:
        basis += (f"; decode's per-layer time × {scale:.3f}: the planned model's {layers} layers average {scale - 1:+.1%} "
                  "the bytes of the layer the slices add (llama.cpp picks some tensors' types by layer position; "
                  "estimate, quantizers/gguf_mix.py)")
    if note:
        basis += f"; {note}"
    if dec_rate is None or pre_rate is None:
        basis += ("; not separable: the deeper slice was not slower than the shallow one (noise larger than a "
                  "layer's cost), so no projection")
    return Projection(
        device=shallow.device, layers_measured=list(depths), layers_projected=layers,
        measured_decode_tok_s=[r.decode_tok_s for r in results], measured_prefill_tok_s=[r.prefill_tok_s for r in results],
        decode_per_layer_ms=dec_per * 1e3, decode_fixed_ms=dec_fixed * 1e3,
        prefill_per_layer_ms=pre_per * 1e3, prefill_fixed_ms=pre_fixed * 1e3,
        decode_tok_s=dec_rate, prefill_tok_s=pre_rate, decode_tok_s_range=dec_span, prefill_tok_s_range=pre_span,
        basis=basis, layer_bytes_ratio=scale, **_machine(results),
    )


def _machine(results: list[TrialResult]) -> dict:
    """The busiest the machine was while the slices were timed: others' CPU share and the workload's ratio."""
    def most(name: str) -> float | None:
        values = [getattr(r, name) for r in results if getattr(r, name) is not None]
        return max(values) if values else None

    return {"cpu_contention": most("cpu_contention"), "pace_ratio": most("pace_ratio")}

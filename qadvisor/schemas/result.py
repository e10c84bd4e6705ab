"""One method's measured outcome. Field names are a contract: other tools read the export."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from qadvisor.schemas.mix import GgufMix


class TrialResult(BaseModel):
    method: str
    backend: str
    bits: float
    status: Literal["ok", "failed", "cancelled"]
    reason: str = ""
    device: str = ""  # where it was measured, e.g. `cpu: ... (2 threads)`
    node: str | None = None  # --cluster: the Ray node that measured it (address and node id)
    kind: str | None = None  # --cluster: that node's hardware kind (core.hardware.hardware_kind)
    # compression
    size_bytes: int | None = None  # saved weights on disk
    weights_mem_bytes: int | None = None  # tensors held in memory after reload
    compression_ratio: float | None = None  # bf16_bytes / size_bytes
    size_reduction_pct: float | None = None  # 100 * (1 - size_bytes / bf16_bytes)
    # speed (batch 1, greedy)
    prefill_tok_s: float | None = None
    prefill_tok_s_spread: float | None = None
    decode_tok_s: float | None = None
    decode_tok_s_spread: float | None = None  # max - min over the repeats
    # what decode_tok_s is: measured in this run, projected from slices, or a bandwidth bound (an upper limit
    # for a GPU that is not here); the target advice holds the latter two
    decode_kind: Literal["measured", "projected", "bound", "estimate"] = "measured"  # estimate: from disk
    ttft_ms: float | None = None
    decode_tokens: int | None = None  # new tokens per timed generation (fewer than asked where steps are slow)
    decode_cv: float | None = None  # coefficient of variation of the repeats' decode speeds (stdev ÷ mean)
    # this machine's earlier runs' decode of the same model and method (newest last): the spread between processes
    decode_earlier: list[float] = []
    repeats: int | None = None  # timed generations behind the medians (more than asked where a generation is short)
    # the share of the CPU other processes took while the speed was timed (core.contention): above 0.10 suspect
    cpu_contention: float | None = None
    # a fixed workload's time around the timing ÷ at the run's start (core.pace): 1.2 or more marks the figure slow
    pace_ratio: float | None = None
    peak_rss_bytes: int | None = None
    kv_cache_bytes: int | None = None  # the KV cache after prompt + the asked new tokens - 1 positions
    compute_dtype: str | None = None  # dtype of the unquantized tensors and activations, e.g. float32
    notes: list[str] = []  # what the measured model ran with that a reader must know (Backend.notes, a fallback)
    # the backend's safe configuration the trial ran in, where its faster path crashed here (quantizers.fallback)
    safe_config: str | None = None
    # accuracy on the held-out text, against the unquantized fp32 reference; for a planned model (--plan-for) where it comes
    # from: measured (this run, this model), streamed (the planned model's own weights, layer by layer: core.measure.streamed),
    # published (at the planned model's size: `reason` names the source), or proxy
    # (the run's small model: not known at the planned model's size)
    accuracy_basis: Literal["measured", "streamed", "published", "proxy"] = "measured"
    ppl: float | None = None
    ppl_delta_pct: float | None = None
    kl_mean: float | None = None
    top1_agreement: float | None = None
    # published where no perplexity is: the change of a benchmark average over the unquantized model, in % of it
    score_delta_pct: float | None = None
    mix: GgufMix | None = None  # a gguf-mix method's types per matrix and the sensitivities behind them
    # how long the steps took
    quantize_s: float | None = None  # with `cached`, how long it took in the run that made the cache entry
    cached: bool = False  # the quantized model came from the cache (same model, method, versions and calibration)
    step_s: dict[str, float] = {}  # seconds per step in this run: load, quantize, save, reload, evaluate, benchmark
    first_call_s: float | None = None  # of evaluate: the first forward pass's seconds beyond a later one's
    start_s: float | None = None  # the trial process's start and common imports, before its first step
    total_s: float | None = None  # from the first step to the result (start_s not included)

    @property
    def loss_pct(self) -> float | None:
        """Accuracy loss in %: the perplexity rise where one is known, else the drop of a published benchmark average
        (two measures, one scale: the advice says when it mixes them)."""
        if self.ppl_delta_pct is not None:
            return self.ppl_delta_pct
        return None if self.score_delta_pct is None else -self.score_delta_pct

"""The planner's data: a target and one plan row per method (all estimates); the architecture is schemas.architecture."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Target(BaseModel):
    name: str  # "this" or a GPU name such as A100-80GB
    count: int = 1
    memory_bytes: int  # per device
    bandwidth_gb_s: float
    bandwidth_source: str  # measured probe, NVML clocks, or datasheet
    device_type: Literal["cpu", "gpu"]


class Projection(BaseModel):
    """A planned model's speed here, projected from slices of it measured with the real backend: the time per token (or
    per prompt) is `fixed + layers × per_layer`, fitted through two slice depths."""

    label: str = "projected"
    device: str  # where the slices were measured
    layers_measured: list[int]  # the two slice depths
    layers_projected: int  # the planned model's decoder layers
    measured_decode_tok_s: list[float]  # per slice depth, median of the repeats
    measured_prefill_tok_s: list[float]
    decode_per_layer_ms: float
    decode_fixed_ms: float  # embeddings, final norm, lm_head and the runtime, per token
    prefill_per_layer_ms: float  # per prompt of `prompt_tokens`
    prefill_fixed_ms: float
    decode_tok_s: float | None = None  # None: the two depths could not be told apart (see basis)
    prefill_tok_s: float | None = None
    # (low, high) from the slowest and fastest repeats at each depth; high None: those repeats allow any speed
    decode_tok_s_range: tuple[float, float | None] | None = None
    prefill_tok_s_range: tuple[float, float | None] | None = None
    basis: str
    # decode's per-layer time was scaled by this: the planned model's average layer ÷ the layer the slices add, in bytes
    # (a GGUF mix that picks types by layer position; quantizers/gguf_mix.py, an estimate); 1.0: as measured
    layer_bytes_ratio: float = 1.0
    capped_at_bound: bool = False  # older exports: the projection exceeded the bound and decode_tok_s is the bound
    above_bound: float | None = None  # the bandwidth bound (tok/s) this projection exceeded, shown beside it
    cpu_contention: float | None = None  # the most of the CPU others took while its slices were timed
    pace_ratio: float | None = None  # the slowest the machine ran meanwhile, by a fixed workload (core.pace)


class PlanRow(BaseModel):
    method: str
    bits: float
    weights_bytes: int
    kv_cache_bytes: int  # full-attention layers, at the plan's context
    state_bytes: int = 0  # linear-attention layers' recurrent and convolution state, the same at any context
    overhead_bytes: int
    total_bytes: int
    size_reduction_pct: float  # of the weights, vs bf16
    fits: bool
    devices_needed: int | None  # GPUs of the target kind needed; None on CPU
    decode_tok_s_bound: float
    size_class: str  # high / medium / low / base, from the size reduction alone (core.plan.planner.FORMULAS)
    notes: str = ""
    experts_kept: str = ""  # an MoE model: why the method's library leaves its experts in bf16 ('' where it quantizes)
    # `plan --measure`: speed projected from slices measured here (None where not measured)
    projected_decode_tok_s: float | None = None
    projected_prefill_tok_s: float | None = None
    projection: Projection | None = None
    bound_fraction: float | None = None  # projected decode ÷ decode_tok_s_bound
    streamed_decode_tok_s: float | None = None  # GGUF that does not fit in RAM: mmap reads it from disk each token


class Plan(BaseModel):
    model: str
    family: str = "Qwen2/Qwen2.5"
    params: int  # every parameter the text model runs with (all experts)
    active_params: int | None = None  # what one token computes with (MoE: the top-k experts)
    stored_extra_params: dict[str, int] = {}  # a checkpoint's MTP layers and vision tower, stored but not run
    context: int
    batch: int
    prompt_tokens: int
    target: Target
    plans: list[PlanRow]
    bf16_bytes: int | None = None  # the model's weights in bf16 (estimate), the baseline of its size reduction
    label: str = "estimate"
    formulas: dict[str, str] = {}
    disk_read_gb_s: float | None = None  # `plan --measure`: measured here, for GGUF streamed from disk
    measure_notes: list[str] = []  # what the measured projection did and did not cover
    # `plan --measure`: wall seconds here of building the slices ("slices") and of each method on them (quantize and
    # save both depths, then time them side by side), in the order measured
    measure_s: dict[str, float] = {}


class PlanCheck(BaseModel):
    """The planner checked against a run: predicted weight bytes next to what the real backend saved."""

    method: str
    predicted_bytes: int  # weights on disk
    measured_bytes: int
    error_pct: float
    # in memory after reload, at the run's compute dtype (the planner's formula with that element size)
    compute_dtype: str | None = None
    predicted_mem_bytes: int | None = None
    measured_mem_bytes: int | None = None
    predicted_kv_bytes: int | None = None
    measured_kv_bytes: int | None = None

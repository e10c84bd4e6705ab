"""The planner's data: a Qwen2-style architecture and one plan row per method (all estimates)."""

from __future__ import annotations

from pydantic import BaseModel


class Architecture(BaseModel):
    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_qkv_bias: bool = True
    head_dim: int | None = None

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def layer_linears(self) -> list[tuple[str, int, int]]:
        """(name, in_features, out_features) of the Linear layers in one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        q = self.num_attention_heads * self.dim_per_head
        kv = self.num_key_value_heads * self.dim_per_head
        return [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h),
                ("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]


class Target(BaseModel):
    name: str  # "this" or a GPU name such as A100-80GB
    count: int = 1
    memory_bytes: int  # per device
    bandwidth_gb_s: float
    bandwidth_source: str  # measured probe, NVML clocks, or datasheet
    kind: str  # "cpu" or "gpu"


class PlanRow(BaseModel):
    method: str
    bits: float
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    total_bytes: int
    size_reduction_pct: float  # of the weights, vs bf16
    fits: bool
    devices_needed: int | None  # GPUs of the target kind needed; None on CPU
    decode_tok_s_bound: float
    archetype: str  # A / B / C from the size reduction
    notes: str = ""


class Plan(BaseModel):
    model: str
    params: int
    context: int
    batch: int
    prompt_tokens: int
    target: Target
    plans: list[PlanRow]
    label: str = "estimate"
    formulas: dict[str, str] = {}


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

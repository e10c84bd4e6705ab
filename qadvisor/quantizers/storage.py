"""How a method stores its weights, as the planner sizes it: each backend's catalogue entry lists one
`StorageFormat` per method (`Backend.storage`), checked against the files the backend writes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from qadvisor.quantizers import gguf_mix
from qadvisor.schemas.architecture import Architecture


@dataclass(frozen=True)
class StorageFormat:
    """How a method stores one Linear layer and the layers it leaves alone."""

    method: str
    bits: float
    linear_bytes: Callable[[int, int], float]
    formula: str
    embed_bits: float = 16.0  # token embeddings
    lm_head_bits: float = 16.0
    untie_lm_head: bool = False  # checkpoint stores an lm_head copy even when the model ties it (freed once tied)
    head_stays_untied: bool = False  # ... and that copy stays resident: the head is never tied back
    scratch: Callable[[Architecture], float] = lambda arch: 0.0
    notes: str = ""
    gguf: bool = False  # llama.cpp's mix: bytes per tensor and layer from quantizers.gguf_mix
    group_size: int | None = None  # inputs per scale, as the method's MethodSpec says
    dense_bytes: int | None = None  # norms and biases: None follows the run (bf16 as saved, fp32 on CPU); fp32: 4


def per_weight(method: str, bits: float, formula: str, row_scale_bytes: float = 0, **kw) -> StorageFormat:
    """`bits` per weight plus, where given, a scale of `row_scale_bytes` per output row."""
    return StorageFormat(method, bits, lambda i, o: i * o * bits / 8 + o * row_scale_bytes, formula, **kw)


def grouped(method: str, bits: float, group: int, scale_bytes: float, zero_bits: float, formula: str,
            g_idx: bool = False, stored_bits: float | None = None, **kw) -> StorageFormat:
    """A format that stores `stored_bits` (default `bits`) per weight plus a scale and a zero point per `group`
    inputs of each output row (and GPTQ's int32 g_idx per input)."""
    def size(n_in: int, n_out: int) -> float:
        groups = math.ceil(n_in / group) * n_out
        return n_in * n_out * (stored_bits or bits) / 8 + groups * (scale_bytes + zero_bits / 8) + (n_in * 4 if g_idx else 0)

    return StorageFormat(method, bits, size, formula, group_size=group, **kw)


def gguf(method: str, bpw: float, note: str) -> StorageFormat:
    """llama.cpp's mixes: each tensor's type by its role and layer (quantizers.gguf_mix); `bpw` is the mix's nominal
    average (the table's bits column), `linear_bytes` the base type with its fallback, for a layer out of context."""
    base = gguf_mix.BASE[method]
    formula = (f"{gguf_mix.BITS[base]} bits per weight, blocks of 32" if gguf_mix.block(base) == 32 else
               "llama.cpp's type for each tensor by its role and layer (quantizers/gguf_mix.py), its bits per weight; "
               "rows not a multiple of 256 fall back to a 32-block type")
    size = lambda i, o: i * o * gguf_mix.BITS[gguf_mix.stored_type(base, i)] / 8  # noqa: E731
    return StorageFormat(method, bpw, size, formula, notes=note, gguf=True, group_size=gguf_mix.block(base))


def largest_linear_fp16(arch: Architecture) -> float:
    """A scratch buffer the size of the model's largest linear in fp16 (GPTQ's exllama kernels keep one)."""
    return max(i * o for index in range(arch.num_hidden_layers) for _, i, o in arch.layer_linears(index)) * 2

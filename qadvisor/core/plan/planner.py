"""Estimate size, memory and a decode-speed bound per method from the architecture alone (no weights loaded)."""

from __future__ import annotations

import math
from typing import Callable

from qadvisor.bundled import package_data
from qadvisor.core.architectures import active_param_count, param_count, stored_extra_params
from qadvisor.errors import UserError
from qadvisor.format import MIB
from qadvisor.quantizers import gguf_mix, mixsolver, registry
from qadvisor.quantizers.kvcache import RESIDUAL_TOKENS
from qadvisor.quantizers.storage import StorageFormat, grouped, per_weight
from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.method import MethodSpec, weights_name
from qadvisor.schemas.plan import Plan, PlanRow, Target

BF16 = 2
USABLE_VRAM = 0.90  # CUDA context, allocator fragmentation and kernels' workspaces take the rest
DEFAULT_PROMPT_TOKENS = 128  # a short prompt; long prompts add prefill activations (--prompt-tokens)
RUNTIME_BYTES = 32 * MIB  # allocator rounding and small buffers seen in Qwen's short-prompt runs

FORMULAS = {
    "params": "embed V·h (+ lm_head V·h when untied) + Σ layers (Σ weight matrices in·out · count + norms, biases, "
              "q/k norms, a linear-attention layer's convolution and decay) + h; an MoE layer's experts count "
              "num_experts times. Without an image-text checkpoint's vision tower or MTP layers (named apart)",
    "active_params": "params with each MoE layer's routed experts counted num_experts_per_tok ÷ num_experts: what one "
                     "token computes with (the shared expert, attention and the head whole)",
    "weights_bytes": "Σ over each layer's weight matrices of the method's bytes(in, out) × count (every expert of an "
                     "MoE layer quantized as any linear; its router kept in bf16) + embeddings and lm_head as the "
                     "method stores them + norms, biases and state parameters in bf16",
    "kv_cache_bytes": "2 (K and V) · full-attention layers · kv_heads · head_dim · context · batch · 2 bytes (fp16 cache); a KV stack "
                      "(+kv-int4, +kv-int2): the positions since the last requantizing ((context − prompt) mod 32) at "
                      "2 bytes, the rest at bits/8 + 2 · 2 / 64 (a scale and a shift per group of 64)",
    "state_bytes": "hybrid models: linear-attention layers · batch · (v_heads · key_dim · value_dim · 4 bytes (fp32 "
                   "recurrent state) + conv_dim · (kernel − 1) · 2 bytes): per sequence, the same at any context",
    "overhead_bytes": "prefill activations batch · prompt · 3 · intermediate · 2 bytes + fp32 logits 2 · batch · V · 4 "
                      "+ the method's kernel scratch + 32 MiB runtime",
    "total_bytes": "max(weights − a checkpoint's duplicate lm_head + KV cache + overhead, weights): the peak over "
                   "loading and generating, as torch.cuda.max_memory_allocated counts it (the CUDA context, about "
                   "0.3–0.5 GiB a GPU, is not in it). Loading holds every tensor of the checkpoint; AWQ files of "
                   "tied-embedding models carry an lm_head copy, freed when transformers ties it to the embedding",
    "fits": f"total ≤ {USABLE_VRAM:.0%} of one device's memory (per GPU, summed over --target …xN); "
            "on CPU total ≤ available RAM",
    "devices_needed": f"ceil(total / ({USABLE_VRAM:.0%} of one GPU's memory)), layers split across GPUs",
    "decode_tok_s_bound": "memory bandwidth / bytes read per new token (all weights but the embedding table, of an MoE "
                          "layer's routed experts the top-k share, plus the KV cache at full context and the linear-"
                          "attention state); an upper bound, real decode is slower; split layers run one GPU "
                          "after another, so the bound uses one GPU's bandwidth",
    "size_reduction_pct": "100 · (1 − weights_bytes / bf16 weights_bytes)",
    "size_class": "high: ≥ 75 % smaller than bf16; medium: 55–75 %; low: 0–55 %; base: no smaller than bf16 "
                  "(unquantized, a baseline). By size alone: the archetypes (Tool A / B / C) are the advisor's, from "
                  "measured numbers",
}


# Formats qadvisor plans but does not run; every runnable method's is on its backend (quantizers.storage).
PLANNED_ONLY = (
    per_weight("fp16", 16, "2 bytes per weight"),
    StorageFormat("fp8", 8, lambda i, o: i * o + math.ceil(i / 128) * math.ceil(o / 128) * 4,
                  "in·out + an fp32 scale per 128 × 128 block (Qwen's FP8 releases; planned, not run here)",
                  untie_lm_head=True, head_stays_untied=True,
                  notes="Qwen's FP8 releases of tied models keep an lm_head copy in bf16, resident while generating"),
)


def formats() -> dict[str, StorageFormat]:
    """Every method's storage by name, most bits first: the backends' catalogue entries (tests/unit/test_method.py
    checks each has its method's bits and group) and the formats planned only. Not cached: a few dozen entries, read
    afresh so a backend registered later is planned too."""
    table = [fmt for backend in registry.backends().values() for fmt in backend.storage] + list(PLANNED_ONLY)
    return {fmt.method: fmt for fmt in sorted(table, key=lambda fmt: -fmt.bits)}


def format_for(name: str) -> StorageFormat | None:
    """How `name` stores its weights: the formats above, measured against real files; else, for a method another
    backend's catalogue entry adds, its bits and group (an estimate, labelled so). None: not a weight method."""
    known = formats().get(name)
    if known is not None:
        return known
    spec = registry.spec(name)
    if spec is None or spec.component != "weights":
        return None
    if spec.scheme == mixsolver.SCHEME:
        return _mix_format(name, spec.bits)
    group = spec.group_size
    return grouped(name, spec.bits, group, 2, 0, f"in·out·{spec.bits:g}/8 + a bf16 scale per {group} inputs of "
                   "each row (estimate: from its catalogue entry's bits and group)") if group else per_weight(
        name, spec.bits, f"in·out·{spec.bits:g}/8 + a bf16 scale per row (estimate: from its catalogue entry's bits)",
        row_scale_bytes=2)


def _mix_format(name: str, bits: float) -> StorageFormat | None:
    """A GGUF mix's bits per weight, where its budget names them: the embeddings and head are typed within the same
    budget; its types are chosen as it is made. A size or KL budget leaves the planner nothing to size from."""
    if mixsolver.parse_budget(name).kind != "bpw":
        return None
    return per_weight(name, bits, f"in·out·{bits:g}/8: the budget (the mix's types are chosen as it is made, from "
                      "the model's sensitivity)", embed_bits=bits, lm_head_bits=bits)


def gpu_table() -> dict[str, dict]:
    return {k: v for k, v in package_data("gpus.json").items() if not k.startswith("_")}


PUBLISHED_MEMORY = ("qwen2.5-published-memory.json", "qwen3-published-memory.json")


def published_memory_tables() -> list[dict]:
    """Qwen's own measured GPU memory per model and method, one table per source (its context and GPU with it)."""
    return [package_data(name) for name in PUBLISHED_MEMORY]


def published_memory(model: str) -> dict:
    """The table holding `model`'s published memory ({} where Qwen published none for it)."""
    return next((table for table in published_memory_tables() if model in table["memory_gib"]), {})


def _small_tensor_bytes(arch: Architecture, dense_bytes: int = BF16) -> float:
    """Norms, qkv biases and a linear-attention layer's convolution and decay, kept unquantized (bf16 as Qwen ships
    them) by every method here."""
    return (sum(arch.layer_small_params(i) for i in range(arch.num_hidden_layers)) + arch.hidden_size) * dense_bytes


def layer_bytes(arch: Architecture, fmt: StorageFormat, index: int, dense_bytes: int = BF16) -> tuple[float, float]:
    """(bytes held, bytes a decoded token reads) of decoder layer `index`'s weight matrices: each expert's as the
    method stores any linear, a token reading its top-k experts only; routers kept as shipped."""
    if fmt.gguf:  # llama.cpp picks each tensor's type by its role and layer

        sized = gguf_mix.layer_weight_bits(fmt.method, index, arch)
        return (sum(bits * w.count for w, bits in sized) / 8, sum(bits * w.count * w.active for w, bits in sized) / 8)
    held = read = 0.0
    kept = experts_left(fmt.method)
    for w in arch.layer_weights(index):
        quantized = w.quantized and not (kept and w.count > 1)
        one = fmt.linear_bytes(w.n_in, w.n_out) if quantized else w.n_in * w.n_out * (fmt.dense_bytes or dense_bytes)
        held += one * w.count
        read += one * w.count * w.active
    return held, read


def experts_left(method: str) -> str:
    """Why `method`'s library leaves an MoE layer's experts unquantized ('' where it quantizes them): the planner then
    sizes them as shipped, as deploying that method would hold them."""
    spec = registry.spec(method)
    return registry.backend_for(spec).experts_left if spec else ""


def weights_bytes(arch: Architecture, fmt: StorageFormat, dense_bytes: int = BF16) -> tuple[int, int]:
    """(bytes held in memory, bytes read per decoded token). `dense_bytes` is the element size of the tensors a
    method leaves unquantized: 2 as saved and on GPU; 4 where a CPU run computes in fp32."""
    table = arch.vocab_size * arch.hidden_size
    per_layer = [layer_bytes(arch, fmt, i, dense_bytes) for i in range(arch.num_hidden_layers)]
    layers, layers_read = sum(h for h, _ in per_layer), sum(r for _, r in per_layer)
    if fmt.gguf:

        embed_bits, head_bits = gguf_mix.table_bits(fmt.method, arch)
    else:
        embed_bits, head_bits = fmt.embed_bits, fmt.lm_head_bits
    embed = table * (embed_bits / 8 if embed_bits != 16 else dense_bytes)  # 16: kept as the run keeps dense tensors
    separate_head = not arch.tie_word_embeddings or fmt.untie_lm_head
    head = table * (head_bits / 8 if head_bits != 16 else dense_bytes) if separate_head else 0.0
    small = _small_tensor_bytes(arch, fmt.dense_bytes or dense_bytes)
    held = layers + embed + head + small
    # Per token the whole lm_head is read (the embedding itself when tied), but only one embedding row.
    read = layers_read + small + (head if separate_head else embed)
    return int(held), int(read)


def duplicate_head_bytes(arch: Architecture, fmt: StorageFormat) -> int:
    """The lm_head copy a checkpoint stores for a tied model: held while loading, freed when the weights are tied."""
    if not (arch.tie_word_embeddings and fmt.untie_lm_head) or fmt.head_stays_untied:
        return 0
    return int(arch.vocab_size * arch.hidden_size * fmt.lm_head_bits / 8)


def kv_cache_bytes(arch: Architecture, context: int, batch: int, dtype_bytes: int = 2, kv: MethodSpec | None = None,
                   prompt: int = 0) -> int:
    """The KV cache holding `context` positions in the full-attention layers (a hybrid model's linear-attention
    layers keep a fixed state instead: `state_bytes`). `kv`: a quantized cache (transformers' QuantizedCache on
    quanto, as the trials run it): the prompt and every RESIDUAL_TOKENS later positions quantized in groups, each
    group with a scale and a shift in the cache's dtype; the positions since the last requantizing kept at
    `dtype_bytes`."""
    elements = 2 * arch.full_attention_layers() * arch.num_key_value_heads * arch.dim_per_head * batch
    if kv is None:
        return elements * context * dtype_bytes

    dense = (context - prompt) % RESIDUAL_TOKENS if context > prompt else 0
    quantized = kv.bits / 8 + 2 * dtype_bytes / kv.group_size
    return int(elements * (dense * dtype_bytes + (context - dense) * quantized))


STATE_BYTES = 4  # the recurrent state in fp32 (transformers' and llama.cpp's), whatever the weights' type


def state_bytes(arch: Architecture, batch: int, dtype_bytes: int = 2) -> int:
    """The linear-attention layers' state per the batch's sequences: the recurrent state (heads × key × value dim)
    in fp32 and the convolution's last kernel − 1 inputs in the model's dtype; the same at any context."""
    layers = arch.num_hidden_layers - arch.full_attention_layers()
    if not layers:
        return 0
    recurrent, conv = arch.linear_state_elements()
    return layers * batch * (recurrent * STATE_BYTES + conv * dtype_bytes)


def split_stack(name: str) -> tuple[str, MethodSpec | None]:
    """`bnb-nf4+kv-int4` → ("bnb-nf4", the kv-int4 spec); a weight method alone → (name, None). A stack the trials
    cannot run (llama.cpp keeps its own cache) is one UserError, as `--methods` says it."""
    weights, _, kv = name.partition("+")
    if not kv:
        return name, None
    if registry.spec(weights) is not None:
        return weights, registry.parse_methods(name)[0].kv
    spec = registry.spec(kv)
    if spec is None or spec.component != "kv-cache":
        raise UserError(f"{name}: {kv} is no KV-cache method; stack kv-int4 or kv-int2")
    return weights, spec


def overhead_bytes(arch: Architecture, fmt: StorageFormat, prompt_tokens: int, batch: int) -> int:
    activations = batch * prompt_tokens * 3 * _widest_mlp(arch) * 2
    logits = 2 * batch * arch.vocab_size * 4
    return int(activations + logits + fmt.scratch(arch) + RUNTIME_BYTES)


def _widest_mlp(arch: Architecture) -> int:
    """The MLP width a prompt's activations take: the dense MLP's, or an MoE layer's experts and shared expert."""
    if not arch.is_moe:
        return arch.intermediate_size
    return max(arch.intermediate_size if arch.dense_layers else 0,
               arch.num_experts_per_tok * arch.moe_intermediate_size + arch.shared_expert_intermediate_size)


def size_class(reduction_pct: float) -> str:
    if reduction_pct <= 0:
        return "base"  # fp32, bf16, fp16: what the others are compared with, not low compression
    return "high" if reduction_pct >= 75 else "medium" if reduction_pct >= 55 else "low"


def parse_target(text: str, ram_available: int | None = None, probe: Callable[[], float] | None = None,
                 threads: int | None = None) -> Target:
    """`this` (its bandwidth measured on `threads`, the trials' count), or a GPU name with an optional `xN` (e.g.
    `A100-80GB`, `H100-80GBx2`)."""
    if text == "this":
        from qadvisor.core.plan.bandwidth import this_machine_target

        return this_machine_target(ram_available, probe, threads)
    name, count = text, 1
    head, sep, tail = text.rpartition("x")
    if sep and tail.isdigit() and head:
        name, count = head, int(tail)
    table = gpu_table()
    match = next((k for k in table if k.lower() == name.lower()), None)
    if match is None or count < 1:
        raise UserError(f"unknown target {text!r}: use `this` or one of {', '.join(table)} (optionally xN, e.g. A100-80GBx2)")
    spec = table[match]
    return Target(name=match, count=count, memory_bytes=spec["vram_mib"] * MIB, bandwidth_gb_s=spec["bandwidth_gb_s"],
                  bandwidth_source="datasheet", device_type="gpu")


def _row(arch: Architecture, target: Target, name: str, context: int, batch: int, prompt: int, bf16_held: int) -> PlanRow:
    """One method's estimates; a KV stack (`bnb-nf4+kv-int4`) has its weights' sizes and a quantized cache."""
    weights, kv_spec = split_stack(name)
    fmt = format_for(weights)
    held, read = weights_bytes(arch, fmt)
    kv = kv_cache_bytes(arch, context, batch, kv=kv_spec, prompt=prompt)
    state = state_bytes(arch, batch)
    extra = overhead_bytes(arch, fmt, prompt, batch)
    total = max(held - duplicate_head_bytes(arch, fmt) + kv + state + extra, held)
    reduction = 100.0 * (1 - held / bf16_held)
    if target.device_type == "gpu":
        needed = math.ceil(total / (USABLE_VRAM * target.memory_bytes))
        fits = needed <= target.count
    else:
        needed, fits = None, total <= target.memory_bytes
    notes = fmt.notes + (f"; KV cache in {kv_spec.bits:g} bits (quanto's quantized cache)" if kv_spec else "")
    kept = experts_left(weights) if arch.is_moe else ""
    if kept:
        notes += f"; experts kept in bf16 ({kept}): qadvisor does not measure it on this model"
    return PlanRow(method=name, bits=fmt.bits, weights_bytes=held, kv_cache_bytes=kv, state_bytes=state,
                   overhead_bytes=extra, total_bytes=total, size_reduction_pct=round(reduction, 2), fits=fits,
                   devices_needed=needed, decode_tok_s_bound=round(target.bandwidth_gb_s * 1e9 / (read + kv + state), 2),
                   size_class=size_class(reduction), notes=notes.lstrip("; "), experts_kept=kept)


def plan(arch: Architecture, target: Target, context: int = 2048, batch: int = 1, prompt_tokens: int | None = None,
         methods: list[str] | None = None) -> Plan:
    """One row per method. Every number is an estimate from the formulas in FORMULAS."""
    if context < 1 or batch < 1:
        raise UserError("--context and --batch must be at least 1", field="context")
    prompt = min(DEFAULT_PROMPT_TOKENS, context) if prompt_tokens is None else prompt_tokens
    if not 1 <= prompt <= context:
        raise UserError("--prompt-tokens must be between 1 and --context", field="prompt_tokens")
    chosen = methods or list(formats())
    unknown = [m for m in chosen if format_for(weights_name(m)) is None]
    if unknown:
        raise UserError(f"the planner does not know {', '.join(unknown)}; it knows {', '.join(formats())} "
                        "(each optionally +kv-int4 or +kv-int2)")
    bf16_held, _ = weights_bytes(arch, formats()["bf16"])
    rows = [_row(arch, target, name, context, batch, prompt, bf16_held) for name in chosen]
    weights = {weights_name(name) for name in chosen}
    formulas = dict(FORMULAS, **{f"bytes(in,out) {w}": format_for(w).formula for w in sorted(weights)})
    return Plan(model=arch.name, family=arch.family_label, params=param_count(arch),
                active_params=active_param_count(arch), stored_extra_params=stored_extra_params(arch), context=context,
                batch=batch, prompt_tokens=prompt, target=target, plans=rows, formulas=formulas,
                bf16_bytes=weights_bytes(arch, formats()["bf16"])[0])

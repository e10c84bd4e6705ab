"""The GGUF writer: a Qwen HF checkpoint as a GGUF that llama.cpp loads (its architecture for each family,
byte-level BPE), unquantized or with each matrix in a type given, quantized by llama.cpp's own routines
(quantizers.ggml). llama.cpp's own converter is not installed by the llama-cpp-python wheel."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from qadvisor.quantizers import ggml, gguf_hybrid, gguf_mix
from qadvisor.schemas.architecture import Architecture

GGUF_FILE = "model.gguf"

@dataclass
class Quantized:
    """Matrices quantized as they are written: `kind` gives each its GGUF type (None: as the checkpoint has it),
    `importance` llama.cpp's importance matrix by name (quantizers.imatrix)."""

    file_type: int  # llama.cpp's LLAMA_FTYPE_* for the header
    kind: Callable[[str, int], str | None]  # (GGUF name, row length) → type
    importance: dict = field(default_factory=dict)
    threads: int = 1



def to_gguf(model_dir: Path, out: Path, quantized: Quantized | None = None) -> None:
    """Write a Qwen HF checkpoint as a GGUF that llama.cpp loads (its architecture for the family, byte-level BPE),
    unquantized or, with `quantized`, in the types it gives."""
    w, entries, kinds = begin_gguf(model_dir, out, quantized)
    for e in entries:
        tensor = e.form(_read(e.parts))
        w.write_tensor_data(ggml.quantize(kinds[e.name], tensor, quantized.importance.get(e.name), quantized.threads)
                            if kinds[e.name] else _gguf_array(tensor, e.bf16))
    w.close()


def begin_gguf(model_dir: Path, out: Path, quantized: Quantized | None = None):
    """The GGUF's header, metadata and tensor table written: (the writer, its entries, each entry's type or None)."""
    import gguf
    import numpy as np

    config = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    arch = Architecture.from_config(model_dir.name, config)
    # tensor infos first, then each tensor read and written in turn: one in memory at a time, written once
    w = gguf.GGUFWriter(str(out), arch=GGUF_ARCH[arch.family])
    w.add_name(model_dir.name)
    w.add_context_length(arch.max_position_embeddings or 2048)
    _add_shape(w, arch, config)
    w.add_file_type(quantized.file_type if quantized else gguf.LlamaFileType.MOSTLY_BF16)
    _add_tokenizer(w, tok, arch.vocab_size)

    entries = _gguf_entries(model_dir, arch)
    kinds = {e.name: quantized.kind(e.name, e.shape[1]) if quantized and len(e.shape) == 2 else None for e in entries}
    for e in entries:  # the header first; then each tensor streams from its shard
        if kinds[e.name]:
            row = ggml.row_bytes(kinds[e.name], e.shape[1])
            w.add_tensor_info(e.name, (e.shape[0], row), np.uint8, e.shape[0] * row,
                              raw_dtype=gguf.GGMLQuantizationType[kinds[e.name]])
            continue
        numel = math.prod(e.shape)
        w.add_tensor_info(e.name, e.shape, np.int16 if e.bf16 else np.float32, numel * (2 if e.bf16 else 4),
                          raw_dtype=gguf.GGMLQuantizationType.BF16 if e.bf16 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    return w, entries, kinds


# qadvisor's families as llama.cpp names them
GGUF_ARCH = {"qwen2": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3moe", **gguf_hybrid.ARCH}
# llama.cpp's converter writes routers and the linear attention's convolution in F32, and its quantizer leaves them so
F32_TENSORS = ("ffn_gate_inp.", "ssm_conv1d.")


def _add_shape(w, arch: Architecture, config: dict) -> None:
    """The hyperparameters llama.cpp reads for the family: attention, the MLP, an MoE layer's experts, a hybrid
    model's linear attention."""
    text = {**config, **(config.get("text_config") or {})}
    w.add_embedding_length(arch.hidden_size)
    w.add_block_count(arch.num_hidden_layers)
    w.add_feed_forward_length(arch.intermediate_size or arch.moe_intermediate_size)
    w.add_head_count(arch.num_attention_heads)
    w.add_head_count_kv(arch.num_key_value_heads)
    rope = text.get("rope_parameters") or {}
    w.add_rope_freq_base(float(rope.get("rope_theta", text.get("rope_theta", 10000.0))))
    w.add_layer_norm_rms_eps(float(text.get("rms_norm_eps", 1e-6)))
    if arch.family != "qwen2":  # Qwen3's head_dim is not hidden_size / heads (0.6B: 128, not 64)
        w.add_key_length(arch.dim_per_head)
        w.add_value_length(arch.dim_per_head)
    if arch.is_moe:
        w.add_expert_count(arch.num_experts)
        w.add_expert_used_count(arch.num_experts_per_tok)
        w.add_expert_feed_forward_length(arch.moe_intermediate_size)
    if arch.is_hybrid:
        gguf_hybrid.add_shape(w, arch, config)


@dataclass
class Entry:
    """One GGUF tensor: where it comes from (an MoE layer's experts: every expert's tensor, stacked), its shape as
    written, whether it is written as BF16, and the form llama.cpp's converter gives it."""

    name: str
    parts: list
    shape: list
    bf16: bool
    form: Callable = lambda tensor: tensor


def _gguf_entries(model_dir: Path, arch: Architecture) -> list[Entry]:
    """Every tensor the file holds, from the shards' headers alone."""
    import torch

    entries = []
    for key, (parts, shape, bf16) in _sources(model_dir, arch.tie_word_embeddings).items():
        if arch.is_hybrid:
            named = gguf_hybrid.outputs(key, arch)
        else:
            named = [(gguf_mix.gguf_name(key, arch.tie_word_embeddings), lambda tensor: tensor)]
        for name, form in named:
            made = form(torch.empty(shape, dtype=torch.bfloat16 if bf16 else torch.float32, device="meta"))
            keep_f32 = any(kind in name for kind in F32_TENSORS) or made.dtype != torch.bfloat16
            entries.append(Entry(name, parts, list(made.shape), made.dim() >= 2 and not keep_f32, form))
    return entries


def _sources(model_dir: Path, tied: bool) -> dict[str, tuple[list, list, bool]]:
    """Each tensor of the text model by its name under `model.` (an image-text checkpoint's prefix dropped): the
    [(shard, key), …] it is read from, its shape and whether it is bf16. An MoE layer's experts, one tensor each in
    the checkpoint, are one source per matrix kind, stacked in expert order (as llama.cpp's converter does)."""
    from safetensors import safe_open

    found: dict[str, list] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                name = key.replace("model.language_model.", "model.", 1)
                if (name == "lm_head.weight" and tied) or name.startswith(("model.visual.", "mtp.")):
                    continue  # llama.cpp reuses token_embd when output.weight is absent; vision and MTP: not loaded
                part = f.get_slice(key)
                expert = gguf_mix.EXPERT_KEY.search(name)
                if expert and expert.group(1) is not None:
                    name = name[:expert.start()] + f"mlp.experts.{expert.group(2)}.weight"
                entry = found.setdefault(name, [[], part.get_shape(), part.get_dtype() == "BF16"])
                entry[0].append((int(expert.group(1)) if expert and expert.group(1) else 0, path, key))
    return {name: ([(p, k) for _, p, k in sorted(parts)],
                   [len(parts), *shape] if len(parts) > 1 else shape, bf16)
            for name, (parts, shape, bf16) in found.items()}


def _read(parts: list) -> "object":
    """One tensor from its shard, or an MoE layer's experts stacked into one."""
    import torch
    from safetensors import safe_open

    tensors = []
    for path, key in parts:
        with safe_open(str(path), framework="pt") as f:
            tensors.append(f.get_tensor(key))
    return tensors[0] if len(tensors) == 1 else torch.stack(tensors)


def _gguf_array(tensor, bf16: bool):
    """A matrix as BF16, bit for bit as the checkpoint holds it (half the bytes of F32 for llama.cpp to read back);
    norms, biases and routers as F32, which llama.cpp's CPU kernels expect for them."""
    import numpy as np
    import torch

    if bf16:
        return tensor.view(torch.int16).numpy()
    return tensor.float().numpy().astype(np.float32)


def _add_tokenizer(w, tok: dict, vocab_size: int) -> None:
    """Byte-level BPE with the GPT-2 split regex, as the bundled tokenizer (and GPT-2) uses."""
    import gguf

    vocab = tok["model"]["vocab"]
    special = {t["id"]: t["content"] for t in tok.get("added_tokens", [])}
    by_id = {i: s for s, i in vocab.items()} | special
    tokens, types = [], []
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
        else:  # the embedding may be padded past the tokenizer's vocabulary
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_tokenizer(tok))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    eos = next(iter(special), 0)
    w.add_bos_token_id(eos)
    w.add_eos_token_id(eos)


def _pre_tokenizer(tok: dict) -> str:
    """llama.cpp's name for the split rule: Qwen's own tokenizers split with a regex before the byte-level step
    ("qwen2"); a plain byte-level one with the GPT-2 regex, as the bundled model's, is "gpt-2"."""
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    return "qwen2" if any(s.get("type") == "Split" for s in steps) else "gpt-2"

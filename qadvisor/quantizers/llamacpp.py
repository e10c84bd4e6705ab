"""llama.cpp through llama-cpp-python: GGUF Q8_0 … Q2_K, the fastest CPU decoder.

The HF checkpoint is written to an unquantized GGUF (bf16 matrices, F32 norms) by `to_gguf` (the `gguf` package; llama.cpp's own converter is
not installed by the wheel), quantized by llama.cpp's `llama_model_quantize`, and measured through
`LlamaAdapter`, which answers the few HF-style calls the metrics make (`model(ids).logits`, a cache).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.method import MethodSpec
from qadvisor.quantizers import gguf_hybrid
from qadvisor.quantizers.base import Backend
from qadvisor.quantizers.fallback import SafeConfig

GGUF_FILE = "model.gguf"
# llama.cpp's LLAMA_FTYPE_* values (llama.h), one per method
FTYPES = {"gguf-q8_0": 7, "gguf-q6_k": 18, "gguf-q4_k_m": 15, "gguf-q3_k_m": 12, "gguf-q2_k": 10,
          "gguf-q4_k_m-imat": 15, "gguf-q2_k-imat": 10, "gguf-iq4_xs": 30}
# the methods whose quantizer weighs each weight's error by llama.cpp's importance matrix
WITH_IMATRIX = frozenset(("gguf-q4_k_m-imat", "gguf-q2_k-imat", "gguf-iq4_xs"))


_WITH_MATRIX = "with an importance matrix from the calibration text"


def _spec(name: str, bits: float, scheme: str, summary: str, group_size: int = 256) -> MethodSpec:
    return MethodSpec(name=name, backend="llamacpp", bits=bits, scheme=scheme, group_size=group_size, summary=summary)


class LlamaCppBackend(Backend):
    name = "llamacpp"
    stand_in = "gguf-q8_0"  # the path its AMX kernels take
    package = "llama_cpp_python"
    also_needs = ("gguf",)  # writes the GGUF file llama.cpp quantizes
    install_hint = "pip install llama-cpp-python gguf (builds llama.cpp from source, 5–10 min)"
    methods = (
        _spec("gguf-q8_0", 8.5, "Q8_0", "GGUF Q8_0 (llama.cpp), 8-bit blocks of 32", group_size=32),
        _spec("gguf-q6_k", 6.5625, "Q6_K", "GGUF Q6_K (llama.cpp) k-quant"),
        _spec("gguf-q4_k_m", 4.85, "Q4_K_M", "GGUF Q4_K_M (llama.cpp) k-quant mix"),
        _spec("gguf-q3_k_m", 3.91, "Q3_K_M", "GGUF Q3_K_M (llama.cpp) k-quant mix"),
        _spec("gguf-q2_k", 2.96, "Q2_K", "GGUF Q2_K (llama.cpp) k-quant mix"),
        _spec("gguf-q4_k_m-imat", 4.85, "Q4_K_M", f"GGUF Q4_K_M {_WITH_MATRIX}"),
        _spec("gguf-q2_k-imat", 2.96, "Q2_K", f"GGUF Q2_K {_WITH_MATRIX}"),
        _spec("gguf-iq4_xs", 4.25, "IQ4_XS", f"GGUF IQ4_XS (an i-quant) {_WITH_MATRIX}"),
    )

    safe_configs = (
        SafeConfig(name="no extra buffers", turns_off="llama.cpp's extra buffer types (AMX kernels, weight repacking)"),
        SafeConfig(name="no mmap", turns_off="memory-mapping the GGUF file"),
    )

    def family_problem(self, spec, family, moe):
        if spec.name in WITH_IMATRIX and (moe or family in gguf_hybrid.ARCH):
            return ("qadvisor collects the importance matrix over a dense model's attention and MLP only, not an MoE "
                    "layer's experts or a linear-attention layer")
        return super().family_problem(spec, family, moe)

    # streamed layer by layer, a method would miss the importance matrix of the whole model's activations
    streamed_methods = frozenset(m.name for m in methods if m.name not in WITH_IMATRIX)
    calib_min_tokens = 16

    def calibrates(self, spec: MethodSpec) -> bool:
        return spec.name in WITH_IMATRIX

    def stream_layer(self, layer, spec, ctx, place):
        """Each linear rounded to the type llama.cpp's quantizer gives it there (quantizers.gguf_mix) by llama.cpp's
        own routines and read back to fp32, its input rounded as llama.cpp's CPU matmul rounds it (ggml.dot_rounded).
        Left out: llama.cpp's F16 KV cache and attention."""
        import torch

        from qadvisor.quantizers import ggml, gguf_mix
        from qadvisor.quantizers.base import cast_plain, plain_linears

        n = place.arch.num_hidden_layers
        for name, linear in plain_linears(layer).items():
            kind = gguf_mix.stored_linear_type(spec.name, name.rsplit(".", 1)[-1], place.index, n, place.arch,
                                               linear.in_features)
            linear.weight = torch.nn.Parameter(ggml.round_trip(kind, linear.weight.data, place.threads),
                                               requires_grad=False)
            linear.register_forward_pre_hook(lambda module, args, kind=kind: (ggml.dot_rounded(kind, args[0]),))
        for experts in fused_experts(layer):
            _round_experts(experts, spec, place)
        return cast_plain(layer, torch.float32)

    streams_experts = True  # the fused experts' matrices rounded too (_round_experts)

    def stream_table(self, spec, role, rows, place):
        from qadvisor.quantizers import ggml, gguf_mix

        embed, output = gguf_mix.table_types(spec.name, place.arch)
        return ggml.round_trip(embed if role == "embed" else output, rows, place.threads)

    def stream_head_input(self, spec, hidden, place):
        from qadvisor.quantizers import ggml, gguf_mix

        return ggml.dot_rounded(gguf_mix.table_types(spec.name, place.arch)[1], hidden)

    def build_key(self) -> str:
        from qadvisor.quantizers.llamacpp_amx import build_key

        return build_key()

    def quantize(self, model_dir, spec, ctx):
        # The "model" between quantize and save is the path of the quantized file in a scratch folder.
        import tempfile

        import llama_cpp

        # in the trial's working folder (its cwd), which the runner removes even when a step fails
        scratch = Path(tempfile.mkdtemp(prefix="gguf-", dir=Path.cwd()))
        if self.calibrates(spec):
            return self._with_importance(Path(model_dir), spec, ctx, scratch / GGUF_FILE)
        full = scratch / "unquantized.gguf"
        ctx.progress("quantize", 0.1, "write an unquantized GGUF (bf16 matrices)")
        to_gguf(Path(model_dir), full)
        ctx.progress("quantize", 0.5, f"llama.cpp quantize → {spec.scheme}")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FTYPES[spec.name]
        params.nthread = ctx.threads
        out = scratch / GGUF_FILE
        if llama_cpp.llama_model_quantize(str(full).encode(), str(out).encode(), params) != 0:
            raise RuntimeError(f"llama_model_quantize failed for {spec.scheme}")
        full.unlink()
        return out

    def _with_importance(self, model_dir: Path, spec: MethodSpec, ctx, out: Path) -> Path:
        """The importance matrix from the calibration text (none on random weights), then each matrix quantized
        with it by llama.cpp's ggml_quantize_chunk, in the type llama.cpp's mix gives it."""
        from qadvisor.quantizers import imatrix

        weights = {}
        if ctx.calibrate:
            ctx.progress("quantize", 0.05, "importance matrix over the calibration text")
            weights = imatrix.importance(model_dir, ctx.calib_texts,
                                         lambda f: ctx.progress("quantize", 0.05 + 0.5 * f, "importance matrix"))
        ctx.progress("quantize", 0.6, f"llama.cpp's ggml_quantize_chunk → {spec.scheme}, tensor by tensor")
        to_gguf(model_dir, out, Quantized(FTYPES[spec.name], imatrix.tensor_types(spec.name, model_dir), weights,
                                          ctx.threads))
        return out

    def save(self, model, spec, out_dir):
        import shutil

        shutil.move(str(model), out_dir / GGUF_FILE)
        shutil.rmtree(Path(model).parent, ignore_errors=True)

    def load(self, out_dir, spec, ctx):
        path = Path(out_dir) / GGUF_FILE if Path(out_dir).is_dir() else Path(out_dir)  # a checkpoint: the file itself
        return LlamaAdapter(path, ctx.threads, ctx.device, ctx.max_tokens, ctx.probe_dir, ctx.safe_level)

    def memory_bytes(self, model) -> int:
        return model.tensor_bytes


@dataclass
class Quantized:
    """Matrices quantized as they are written: `kind` gives each its GGUF type (None: as the checkpoint has it),
    `importance` llama.cpp's importance matrix by name (quantizers.imatrix)."""

    file_type: int  # llama.cpp's LLAMA_FTYPE_* for the header
    kind: Callable[[str, int], str | None]  # (GGUF name, row length) → type
    importance: dict = field(default_factory=dict)
    threads: int = 1


def fused_experts(layer) -> list:
    """A layer's MoE experts modules (transformers 5: gate_up_proj and down_proj as 3-D parameters)."""
    return [m for m in layer.modules() if getattr(getattr(m, "gate_up_proj", None), "dim", lambda: 0)() == 3]


def _round_experts(experts, spec: MethodSpec, place) -> None:
    """Every expert's matrices rounded to the types llama.cpp's mix gives ffn_{gate,up,down}_exps, row by row as
    its quantizer does, and the experts' input rounded as its matmul rounds it. The down projection's input is
    made inside transformers' experts kernel, out of a hook's reach: it stays unrounded (an emulation's limit)."""
    import torch

    from qadvisor.quantizers import ggml, gguf_mix

    n, arch = place.arch.num_hidden_layers, place.arch
    for attr, role in (("gate_up_proj", "gate_proj"), ("down_proj", "down_proj")):
        weight = getattr(experts, attr).data
        kind = gguf_mix.stored_linear_type(spec.name, role, place.index, n, arch)
        rounded = ggml.round_trip(kind, weight.reshape(-1, weight.shape[-1]), place.threads).reshape(weight.shape)
        setattr(experts, attr, torch.nn.Parameter(rounded, requires_grad=False))
    kind = gguf_mix.stored_linear_type(spec.name, "gate_proj", place.index, n, arch)
    experts.register_forward_pre_hook(lambda module, args, kind=kind: (ggml.dot_rounded(kind, args[0]), *args[1:]))


def to_gguf(model_dir: Path, out: Path, quantized: Quantized | None = None) -> None:
    """Write a Qwen HF checkpoint as a GGUF that llama.cpp loads (its architecture for the family, byte-level BPE),
    unquantized or, with `quantized`, in the types it gives."""
    import gguf
    import numpy as np

    from qadvisor.quantizers import ggml

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
    for e in entries:
        tensor = e.form(_read(e.parts))
        w.write_tensor_data(ggml.quantize(kinds[e.name], tensor, quantized.importance.get(e.name), quantized.threads)
                            if kinds[e.name] else _gguf_array(tensor, e.bf16))
    w.close()


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

    from qadvisor.quantizers import gguf_mix

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

    from qadvisor.quantizers import gguf_mix

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
    """Byte-level BPE with the GPT-2 split regex, as the shipped tokenizer (and GPT-2) uses."""
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
    ("qwen2"); a plain byte-level one with the GPT-2 regex, as the shipped model's, is "gpt-2"."""
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    return "qwen2" if any(s.get("type") == "Split" for s in steps) else "gpt-2"


class _Out:
    def __init__(self, logits, cache):
        self.logits = logits
        self.cache = cache


class LlamaAdapter:
    """A llama.cpp model behind the HF-style calls qadvisor's metrics make: `model(ids, use_cache, cache)`.

    A call without a cache starts a new sequence; a call with the returned cache continues it (llama.cpp keeps
    the KV cache inside the context, so the "cache" is a marker of the sequence position).
    """

    compute_dtype = "float32"  # llama.cpp's CPU path; GGUF keeps norms and biases in F32 too

    def __init__(self, path: Path, threads: int, device: str, n_ctx: int, probe_dir: Path | None = None,
                 safe_level: int = 0):
        import llama_cpp

        from qadvisor.quantizers import llamacpp_amx

        gpu = device.startswith("cuda")
        if gpu and not llama_cpp.llama_supports_gpu_offload():
            # it would silently run on the CPU while the result says cuda
            raise RuntimeError("this llama-cpp-python build has no GPU offload; reinstall it with "
                               "CMAKE_ARGS=-DGGML_CUDA=on to measure GGUF on the GPU, or run with --device cpu")
        # the level the trial was given, or the probe's where llama.cpp's AMX kernels die here (the result says which)
        self.safe_level = safe_level if gpu else max(safe_level, llamacpp_amx.probed_level(path, threads, probe_dir))
        # logits_all keeps n_ctx × vocab floats, so the context is only as long as the trial needs
        with llamacpp_amx.safe_params(self.safe_level):
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=threads,
                                       n_threads_batch=threads, logits_all=True, verbose=False,
                                       n_gpu_layers=-1 if gpu else 0)
        # llama.cpp's own count of its tensors' bytes (as the GGUF's tensor table has them, without parsing the file
        # again in Python: a fifth of a second on the shipped model)
        self.tensor_bytes = int(llama_cpp.llama_model_size(self.llm._model.model))
        self._one = llama_cpp._internals.LlamaBatch(n_tokens=1, embd=0, n_seq_max=1)  # freed with the adapter
        one = self._one.batch
        one.n_tokens, one.n_seq_id[0], one.seq_id[0][0], one.logits[0] = 1, 1, 0, True

    def eval(self):
        return self

    def forward(self, input_ids, use_cache: bool = False, cache=None, logits_to_keep: int = 0):
        import numpy as np
        import torch

        tokens = input_ids[0].tolist()
        if cache is None:
            self.llm.reset()
        start = self.llm.n_tokens
        if logits_to_keep == 1 or len(tokens) == 1:
            self._decode_for_last(tokens)
            scores = np.array(self._last_logits(), dtype=np.float32)[None]
        else:
            self.llm.eval(tokens)
            scores = np.array(self.llm.scores[start:self.llm.n_tokens], dtype=np.float32)
        return _Out(torch.from_numpy(scores)[None], _Position(self.llm.n_tokens) if use_cache else None)

    def greedy_step(self, tokens: list[int], fresh: bool = False) -> int:
        """Decode `tokens` and return the most likely next one, as llama.cpp's own greedy sampler does: no tensors
        per step (torch's argmax and conversions cost 3 % of a step on the shipped model)."""
        if fresh:
            self.llm.reset()
        self._decode_for_last(tokens)
        return int(self._last_logits().argmax())

    def _decode_one(self, token: int) -> None:
        """A decode step straight to `llama_decode` through a batch of one made once: llama-cpp-python's `eval` fills
        a batch and trims the cache in Python at every step (15–20 µs of a 600 µs step on the shipped model). Only
        after `eval` began the sequence (a reset leaves n_tokens at 0), so no stale cache cells lie past its end."""
        import llama_cpp

        batch = self._one.batch
        batch.token[0], batch.pos[0] = token, self.llm.n_tokens
        if llama_cpp.llama_decode(self.llm._ctx.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        self.llm.n_tokens += 1

    def _decode_for_last(self, tokens: list[int]) -> None:
        # as llama.cpp generates: the output layer runs at the last position only (and a decode step has no other;
        # its logits then skip the copy into the all-positions table: 3 % of a step on the shipped model)
        if len(tokens) == 1 and self.llm.n_tokens > 0:  # a decode step of a sequence `eval` started
            self._decode_one(tokens[0])
            return
        self.llm._logits_all = False
        try:
            self.llm.eval(tokens)
        finally:
            self.llm._logits_all = True

    def _last_logits(self):
        """llama.cpp's buffer of the last position's logits, valid until the next decode."""
        import numpy as np

        return np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.llm.n_vocab(),))

    __call__ = forward


class _Position(tuple):
    """Stands for llama.cpp's internal KV cache: no tensors qadvisor can count."""

    def __new__(cls, n_tokens: int):
        return super().__new__(cls)


BACKEND = LlamaCppBackend()

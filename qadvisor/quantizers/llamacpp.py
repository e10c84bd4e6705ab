"""llama.cpp through llama-cpp-python: GGUF Q8_0 … Q2_K, the fastest CPU decoder.

The HF checkpoint is written to an unquantized GGUF (bf16 matrices, F32 norms) by quantizers.ggufwrite, quantized by
llama.cpp's `llama_model_quantize`, and measured through `LlamaAdapter`, which answers the few HF-style calls the
metrics make (`model(ids).logits`, a cache).
"""

from __future__ import annotations

from pathlib import Path

from qadvisor.quantizers import ggml, gguf_hybrid, gguf_mix, ggufmix, imatrix, llamacpp_amx
from qadvisor.quantizers.base import Backend, cast_plain, plain_linears
from qadvisor.quantizers.fallback import SafeConfig
from qadvisor.quantizers.ggufwrite import GGUF_FILE, Quantized, to_gguf
from qadvisor.quantizers.storage import gguf
from qadvisor.schemas.method import MethodSpec

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
    storage = tuple(gguf(m.name, m.bits, note) for m, note in zip(methods, (
        "Q8_0 everywhere", "Q6_K everywhere (Q8_0 where a row is not a multiple of 256)",
        "Q4_K with Q6_K for attn_v / ffn_down of half the layers; output Q6_K",
        "Q3_K with Q4_K/Q5_K for attn_v, attn_output, ffn_down; output Q6_K",
        "Q2_K with Q3_K/Q4_K for attn_v, attn_output, ffn_down; output Q6_K",
        "gguf-q4_k_m's types, quantized with an importance matrix", "gguf-q2_k's types, quantized with an importance matrix",
        "IQ4_XS, with Q5_K for attn_v where 4+ heads share it; output Q6_K"), strict=True))

    safe_configs = (
        SafeConfig(name="no extra buffers", turns_off="llama.cpp's extra buffer types (AMX kernels, weight repacking)"),
        SafeConfig(name="no mmap", turns_off="memory-mapping the GGUF file"),
    )

    method_forms = (ggufmix.FORM,)

    def method_named(self, name):
        return ggufmix.method_named(name)

    def model_problem(self, spec, arch):
        if spec.scheme == ggufmix.FORM.scheme and not self.family_problem(spec, arch.family, arch.is_moe):
            ggufmix.check_budget(spec, arch)

    def made_with(self, save_dir):
        return ggufmix.read(save_dir)

    def family_problem(self, spec, family, moe):
        if spec.scheme == ggufmix.FORM.scheme and (moe or family in gguf_hybrid.ARCH):
            return "its sensitivity pass measures a dense model's attention and MLP matrices only, so far"
        if spec.name in WITH_IMATRIX and (moe or family in gguf_hybrid.ARCH):
            return ("qadvisor collects the importance matrix over a dense model's attention and MLP only, not an MoE "
                    "layer's experts or a linear-attention layer")
        return super().family_problem(spec, family, moe)

    # streamed layer by layer, a method would miss the importance matrix of the whole model's activations
    streamed_methods = frozenset(m.name for m in methods if m.name not in WITH_IMATRIX)
    calib_min_tokens = 16

    def calibrates(self, spec: MethodSpec) -> bool:
        return spec.name in WITH_IMATRIX or spec.scheme == ggufmix.FORM.scheme

    def stream_layer(self, layer, spec, ctx, place):
        """Each linear rounded to the type llama.cpp's quantizer gives it there (quantizers.gguf_mix) by llama.cpp's
        own routines and read back to fp32, its input rounded as llama.cpp's CPU matmul rounds it (ggml.dot_rounded).
        Left out: llama.cpp's F16 KV cache and attention."""
        import torch

        n = place.arch.num_hidden_layers
        for name, linear in plain_linears(layer).items():
            kind = (place.types[gguf_mix.gguf_name(f"model.layers.{place.index}.{name}.weight", False)] if place.types
                    else gguf_mix.stored_linear_type(spec.name, name.rsplit(".", 1)[-1], place.index, n, place.arch,
                                                     linear.in_features))
            linear.weight = torch.nn.Parameter(ggml.round_trip(kind, linear.weight.data, place.threads),
                                               requires_grad=False)
            linear.register_forward_pre_hook(lambda module, args, kind=kind: (ggml.dot_rounded(kind, args[0]),))
        for experts in fused_experts(layer):
            _round_experts(experts, spec, place)
        return cast_plain(layer, torch.float32)

    streams_experts = True  # the fused experts' matrices rounded too (_round_experts)

    def stream_table(self, spec, role, rows, place):
        embed, output = _table_types(spec, place)
        return ggml.round_trip(embed if role == "embed" else output, rows, place.threads)

    def stream_head_input(self, spec, hidden, place):
        return ggml.dot_rounded(_table_types(spec, place)[1], hidden)

    def build_key(self) -> str:
        return llamacpp_amx.build_key()

    def quantize(self, model_dir, spec, ctx):
        # The "model" between quantize and save is the path of the quantized file in a scratch folder.
        import tempfile

        import llama_cpp

        # in the trial's working folder (its cwd), which the runner removes even when a step fails
        if spec.scheme == ggufmix.FORM.scheme:
            return ggufmix.quantize(Path(model_dir), spec, ctx)
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
        if (Path(model).parent / ggufmix.MIX_FILE).is_file():
            shutil.move(str(Path(model).parent / ggufmix.MIX_FILE), out_dir / ggufmix.MIX_FILE)
        shutil.rmtree(Path(model).parent, ignore_errors=True)

    def load(self, out_dir, spec, ctx):
        path = Path(out_dir) / GGUF_FILE if Path(out_dir).is_dir() else Path(out_dir)  # a checkpoint: the file itself
        return LlamaAdapter(path, ctx.threads, ctx.device, ctx.max_tokens, ctx.probe_dir, ctx.safe_level)

    def memory_bytes(self, model) -> int:
        return model.tensor_bytes


def _table_types(spec: MethodSpec, place) -> tuple[str, str]:
    """(embeddings, head) types: a mix's own (a tied head is token_embd), else llama.cpp's rule for the method."""
    if place.types:
        embed = place.types["token_embd.weight"]
        return embed, place.types.get("output.weight", embed)
    return gguf_mix.table_types(spec.name, place.arch)


def fused_experts(layer) -> list:
    """A layer's MoE experts modules (transformers 5: gate_up_proj and down_proj as 3-D parameters)."""
    return [m for m in layer.modules() if getattr(getattr(m, "gate_up_proj", None), "dim", lambda: 0)() == 3]


def _round_experts(experts, spec: MethodSpec, place) -> None:
    """Every expert's matrices rounded to the types llama.cpp's mix gives ffn_{gate,up,down}_exps, row by row as
    its quantizer does, and the experts' input rounded as its matmul rounds it. The down projection's input is
    made inside transformers' experts kernel, out of a hook's reach: it stays unrounded (an emulation's limit)."""
    import torch

    n, arch = place.arch.num_hidden_layers, place.arch
    for attr, role in (("gate_up_proj", "gate_proj"), ("down_proj", "down_proj")):
        weight = getattr(experts, attr).data
        kind = gguf_mix.stored_linear_type(spec.name, role, place.index, n, arch)
        rounded = ggml.round_trip(kind, weight.reshape(-1, weight.shape[-1]), place.threads).reshape(weight.shape)
        setattr(experts, attr, torch.nn.Parameter(rounded, requires_grad=False))
    kind = gguf_mix.stored_linear_type(spec.name, "gate_proj", place.index, n, arch)
    experts.register_forward_pre_hook(lambda module, args, kind=kind: (ggml.dot_rounded(kind, args[0]), *args[1:]))


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
        # again in Python: a fifth of a second on the bundled model)
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
        per step (torch's argmax and conversions cost 3 % of a step on the bundled model)."""
        if fresh:
            self.llm.reset()
        self._decode_for_last(tokens)
        return int(self._last_logits().argmax())

    def _decode_one(self, token: int) -> None:
        """A decode step straight to `llama_decode` through a batch of one made once: llama-cpp-python's `eval` fills
        a batch and trims the cache in Python at every step (15–20 µs of a 600 µs step on the bundled model). Only
        after `eval` began the sequence (a reset leaves n_tokens at 0), so no stale cache cells lie past its end."""
        import llama_cpp

        batch = self._one.batch
        batch.token[0], batch.pos[0] = token, self.llm.n_tokens
        if llama_cpp.llama_decode(self.llm._ctx.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        self.llm.n_tokens += 1

    def _decode_for_last(self, tokens: list[int]) -> None:
        # as llama.cpp generates: the output layer runs at the last position only (and a decode step has no other;
        # its logits then skip the copy into the all-positions table: 3 % of a step on the bundled model)
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

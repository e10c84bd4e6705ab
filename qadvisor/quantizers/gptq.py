"""GPTQ through GPTQModel, the maintained successor of the archived auto-gptq.

auto-gptq cannot import with transformers 5.x and refuses to quantize without CUDA; GPTQModel
quantizes and runs on CPU (torch kernel) and picks fast CUDA kernels when a GPU is present.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from qadvisor.quantizers.base import Backend, cast_plain, plain_linears, use_compute_dtype
from qadvisor.quantizers.storage import grouped, largest_linear_fp16
from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.method import MethodSpec

GROUP_SIZE = 128
CALIB_TOKENS = 256  # per calibration sample
# GPTQ solves for each linear layer from the Hessian of its inputs (in_features²): a few times in_features tokens
# condition it well; more only costs forward passes (checked against the KL of gptq-int4, benchmarks/RESULTS.md).
TOKENS_PER_INPUT = 8
MIN_SAMPLES = 8


def _spec(bits: int) -> MethodSpec:
    return MethodSpec(
        name=f"gptq-int{bits}", backend="gptq", bits=bits, scheme=f"int{bits}", group_size=GROUP_SIZE,
        summary=f"GPTQ {bits}-bit, group {GROUP_SIZE}, calibrated",
    )


PACK_EXT_OFF = "GPTQMODEL_DISABLE_PACK_EXT"


class GPTQBackend(Backend):
    name = "gptq"
    stand_in = "gptq-int4"
    package = "gptqmodel"
    min_version = "7.0"
    install_hint = "BUILD_CUDA_EXT=0 pip install gptqmodel==7.6.0"
    calibrated = True
    calib_min_tokens = 16
    uncalibrated_note = ("GPTQ codes rounded to nearest (GPTQModel's RTNConfig), not calibrated: random weights; "
                         "the same GPTQ format and kernel, so its size and speed are GPTQ's")
    methods = tuple(_spec(b) for b in (8, 4, 3, 2))
    storage = (
        grouped("gptq-int8", 8, 128, 2, 8, "in·out + per-128 group fp16 scale and 8-bit zero + int32 g_idx", g_idx=True),
        grouped("gptq-int4", 4, 128, 2, 4, "in·out/2 + per-128 group fp16 scale and 4-bit zero + int32 g_idx", g_idx=True,
                scratch=largest_linear_fp16, notes="exllama kernels keep an fp16 scratch the size of the largest layer"),
        grouped("gptq-int3", 3, 128, 2, 3, "3/8·in·out + per-128 group fp16 scale and 3-bit zero + g_idx", g_idx=True),
        grouped("gptq-int2", 2, 128, 2, 2, "in·out/4 + per-128 group fp16 scale and 2-bit zero + g_idx", g_idx=True),
    )

    def _import(self, ctx):
        # GPTQModel sizes its CPU thread pool at import; fewer than 2 workers deadlocks its loader pool.
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, ctx.threads)))
        # Its torch packing writes the same bytes as its C++ packer, which builds on first use (24 s of a new machine's
        # first run, for no time saved on the bundled model): see benchmarks/RESULTS.md.
        os.environ.setdefault(PACK_EXT_OFF, "1")
        from gptqmodel import GPTQModel, QuantizeConfig

        _compile_per_shape()
        return GPTQModel, QuantizeConfig

    def uncalibrated_note_for(self, model_dir):
        if not rounds_to_nearest(model_dir):
            return (f"{self.name.upper()} calibrated on the text with random weights (GPTQModel's round-to-nearest "
                    "fails on a hybrid MoE model); the same format and kernel, so its size and speed are the method's")
        return self.uncalibrated_note

    def quantize(self, model_dir, spec, ctx):
        if not ctx.calibrate and rounds_to_nearest(model_dir):
            return self._round_to_nearest(model_dir, spec, ctx)
        from transformers import AutoTokenizer

        GPTQModel, QuantizeConfig = self._import(ctx)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        calib = _calibration(tokenizer, ctx.calib_texts, _config_inputs(model_dir))
        # offload_to_disk: GPTQModel would write every layer to a temporary folder and read it back (for models larger
        # than memory); qadvisor measures models that fit, so it only costs time. true_sequential=False: one forward
        # pass per layer feeds all its linears instead of one pass per group of them (same KL here, 17 % less time).
        config = QuantizeConfig(bits=int(spec.bits), group_size=spec.group_size, offload_to_disk=False,
                                true_sequential=False)
        wrapped = GPTQModel.load(str(model_dir), config, device=ctx.device, dtype=ctx.work_dtype)
        with layer_progress(wrapped, ctx):
            wrapped.quantize(calib, batch_size=4)
        return _bf16_storage(wrapped)

    def _round_to_nearest(self, model_dir, spec, ctx):
        """Codes in GPTQ's format without calibration: seconds where calibrating a 72B layer on a CPU takes hours."""

        GPTQModel, _ = self._import(ctx)
        from gptqmodel.quantization.config import RTNConfig

        ctx.progress("quantize", 0.1, "round-to-nearest codes in GPTQ's format (random weights: nothing to calibrate)")
        wrapped = GPTQModel.load(str(model_dir), RTNConfig(bits=int(spec.bits), group_size=spec.group_size,
                                                           offload_to_disk=False),
                                 device=ctx.device, dtype=ctx.work_dtype)
        wrapped.quantize(None)
        return _bf16_storage(wrapped)

    streamed_methods = frozenset(m.name for m in methods)

    def stream_calibration(self, model_dir, texts):
        from transformers import AutoTokenizer

        samples = _calibration(AutoTokenizer.from_pretrained(str(model_dir)), texts, _config_inputs(model_dir))
        return [s["input_ids"] for s in samples]

    def stream_layer(self, layer, spec, ctx, place):
        """GPTQModel's own solver on each linear of the layer, fed by the layer's inputs from this method's quantized
        stream (all linears from one pass: true_sequential off, as the whole-model trial runs it); then the stream is
        carried on through the quantized layer."""
        import copy

        import torch

        self._import(ctx)
        from gptqmodel import QuantizeConfig
        from gptqmodel.quantization.gptq import GPTQ

        config = QuantizeConfig(bits=int(spec.bits), group_size=spec.group_size, offload_to_disk=False,
                                true_sequential=False)
        layer = layer.to(ctx.work_dtype)
        tokens = sum(x.shape[1] for x in place.calib)
        tasks, hooks = {}, []
        for name, linear in plain_linears(layer).items():
            task = tasks[name] = GPTQ(module=linear, qcfg=copy.deepcopy(config))
            task.fallback, task.expected_nsamples = config.fallback, tokens
            task.quantizer.configure(perchannel=True)
            hooks.append(linear.register_forward_hook(
                lambda module, inp, out, task=task: task.add_batch(inp[0].data, out.data)))
        with torch.no_grad():
            for x in place.calib:
                place.run(layer, x)
        for hook in hooks:
            hook.remove()
        for name, task in tasks.items():
            linear = layer.get_submodule(name)
            linear.weight.data = task.quantize()[0].to(linear.weight.dtype)
            task.free()
        with torch.no_grad():
            place.calib[:] = [place.run(layer, x) for x in place.calib]
        return cast_plain(layer, ctx.compute_dtype)

    def save(self, model, spec, out_dir):
        model.save(str(out_dir))

    def load(self, out_dir, spec, ctx):
        GPTQModel, _ = self._import(ctx)
        return use_compute_dtype(GPTQModel.load(str(out_dir), device=ctx.device).model, ctx.compute_dtype)


# TorchLinear's helpers that look up a per-layer cache keyed on a tensor's address (a Python int to dynamo).
_CACHE_LOOKUPS = ("_stream_decode_qzeros", "_stream_g_idx_long", "_maybe_offload_g_idx_to_cpu",
                  "_init_wf_unsqueeze_buffers")


def _compile_per_shape() -> None:
    """Let GPTQModel's CPU kernel (TorchLinear, for 2, 3 and 8 bits) compile once per weight shape, not per layer.

    The kernel compiles its dequantize step, inside which those cache lookups make dynamo guard on each layer's tensor
    addresses: it recompiled 67 times for the bundled model's 56 linears (2 to 8 s of a run), meets dynamo's recompile
    limit at Qwen2.5-0.5B's 168 (the rest then run eager), and every call walks that chain of guards. Run eagerly
    (they only read or fill the layer's cache), the lookups leave 4 graphs of the same arithmetic, 13 frames; decode
    was no slower in fresh processes taking turns (benchmarks/RESULTS.md)."""
    import torch
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear

    for name in _CACHE_LOOKUPS:
        lookup = getattr(TorchLinear, name, None)
        if lookup is not None and not getattr(lookup, "_torchdynamo_disable", False):
            setattr(TorchLinear, name, torch._dynamo.disable(lookup))


# GPTQModel 7.6's round-to-nearest (RTNConfig) dies on these (KeyError 'q_zeros' finalizing a linear-attention
# model's experts); its calibrated solver runs them
RTN_FAILS = ("qwen3_next", "qwen3_5_moe")


def rounds_to_nearest(model_dir) -> bool:
    """Whether random weights of this model are rounded to nearest rather than calibrated."""
    return _architecture(model_dir).family not in RTN_FAILS


def _architecture(model_dir):
    import json

    return Architecture.from_config("", json.loads((Path(model_dir) / "config.json").read_text()))


def _config_inputs(model_dir) -> int:
    """The widest input of a matrix the method quantizes (a dense MLP's down projection; an MoE model's experts are
    narrower): what the calibration must cover."""
    arch = _architecture(model_dir)
    return max(n_in for index in range(arch.num_hidden_layers) for _, n_in, _ in arch.layer_linears(index))


def _calibration(tokenizer, texts: list[str], inputs: int) -> list[dict]:
    """As many samples of up to CALIB_TOKENS tokens as TOKENS_PER_INPUT × the widest input needs (at least
    MIN_SAMPLES, at most what the text has)."""
    calib, tokens = [], 0
    for text in texts:
        if tokens >= TOKENS_PER_INPUT * inputs and len(calib) >= MIN_SAMPLES:
            break
        ids = tokenizer(text).input_ids[:CALIB_TOKENS]
        if len(ids) >= GPTQBackend.calib_min_tokens:
            calib.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
            tokens += len(ids)
    if not calib:
        raise ValueError("no calibration text long enough for GPTQ")
    return calib


@contextmanager
def layer_progress(wrapped, ctx):
    """Progress per decoder layer while GPTQModel quantizes (it walks the decoder one layer at a time)."""
    layers = wrapped.model.model.layers
    seen: set[int] = set()

    def report(index):
        def hook(module, args):
            if index not in seen:
                seen.add(index)
                ctx.progress("quantize", index / len(layers), f"layer {index + 1}/{len(layers)}")

        return hook

    handles = [layer.register_forward_pre_hook(report(i)) for i, layer in enumerate(layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _bf16_storage(wrapped):
    """The unquantized tensors (embeddings, norms, biases) are stored in bf16 whatever dtype GPTQ worked in, so the
    file's size is the same on every machine."""
    import torch

    use_compute_dtype(wrapped.model, torch.bfloat16)
    return wrapped


BACKEND = GPTQBackend()

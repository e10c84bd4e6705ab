"""The unquantized baselines: fp32 and bf16, through transformers alone."""

from __future__ import annotations

from qadvisor.schemas.method import MethodSpec
from qadvisor.quantizers.base import Backend, load_hf, use_compute_dtype
from qadvisor.quantizers.storage import per_weight


class NativeBackend(Backend):
    name = "torch"
    stand_in = "fp32"
    package = "transformers"
    install_hint = "pip install transformers"
    methods = (
        MethodSpec(name="fp32", backend="torch", bits=32, scheme="fp32", summary="unquantized, float32"),
        MethodSpec(name="bf16", backend="torch", bits=16, scheme="bf16", summary="unquantized, bfloat16 (as Qwen ships)"),
    )
    storage = (per_weight("fp32", 32, "4 bytes per weight", embed_bits=32, lm_head_bits=32, dense_bytes=4),
               per_weight("bf16", 16, "2 bytes per weight"))

    def _dtype(self, spec):
        import torch

        return torch.float32 if spec.scheme == "fp32" else torch.bfloat16

    streamed_methods = frozenset(m.name for m in methods)
    streams_experts = True  # nothing to quantize: every tensor cast alike

    def stream_layer(self, layer, spec, ctx, place):
        return layer.to(self._dtype(spec))

    def stream_dtype(self, spec):
        return self._dtype(spec)

    def quantize(self, model_dir, spec, ctx):
        return load_hf(model_dir, self._dtype(spec), ctx.device)

    def save(self, model, spec, out_dir):
        model.save_pretrained(str(out_dir))

    def load(self, out_dir, spec, ctx):
        if spec.source:  # a checkpoint as shipped (quantizers.checkpoint): transformers reads its config
            import torch

            kwargs = {}
            if spec.scheme == "fp8" and ctx.device == "cpu":  # no FP8 kernel on a CPU: bf16 weights once loaded
                from transformers import FineGrainedFP8Config

                kwargs["quantization_config"] = FineGrainedFP8Config(dequantize=True)
            model = load_hf(out_dir, torch.bfloat16, ctx.device, **kwargs)
            model.qadvisor_dequantized = bool(kwargs)
            return use_compute_dtype(model, ctx.compute_dtype)
        return load_hf(out_dir, self._dtype(spec), ctx.device)

    def notes(self, model) -> list[str]:
        if getattr(model, "qadvisor_dequantized", False):
            return ["FP8 dequantized to bf16 as it loaded (no FP8 kernel on this CPU): its size on disk and accuracy "
                    "are FP8's; its memory and speed here are an unquantized model's, not what an FP8 GPU kernel does"]
        if getattr(model.config, "quantization_config", None) is None:
            return []
        return ["compressed-tensors through transformers: the weights stay packed as the checkpoint holds them and "
                "the library unpacks them at every matmul"]


BACKEND = NativeBackend()

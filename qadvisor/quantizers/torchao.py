"""torchao: int8 weight-only (`Int8WeightOnlyConfig`). Its int4 kernels need CUDA, so int4 is GPU-only."""

from __future__ import annotations

from qadvisor.schemas.method import MethodSpec
from qadvisor.quantizers.base import Backend, cast_plain, empty_hf, load_hf, untied_state_dict, use_compute_dtype
from qadvisor.quantizers.storage import grouped, per_weight

WEIGHTS_FILE = "model.pt"  # torchao tensor subclasses serialise through torch.save, not safetensors


class TorchAOBackend(Backend):
    name = "torchao"
    stand_in = "torchao-int8"
    package = "torchao"
    install_hint = "pip install torchao"
    methods = (
        MethodSpec(name="torchao-int8", backend="torchao", bits=8, scheme="int8", summary="int8 weight-only, per channel"),
        MethodSpec(name="torchao-int4", backend="torchao", bits=4, scheme="int4", group_size=128,
                   summary="int4 weight-only, group 128 (CUDA)"),
    )
    storage = (per_weight("torchao-int8", 8, "in·out + bf16 per-row scale and zero point", row_scale_bytes=4),
               grouped("torchao-int4", 4, 128, 2, 16, "in·out/2 + bf16 scale and zero per 128 (tinygemm layout)"))
    experts_left = "torchao's quantize_ converts nn.Linear modules only"
    cpu_methods = frozenset({"torchao-int8"})

    def _config(self, spec):
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig

        return Int8WeightOnlyConfig() if spec.bits == 8 else Int4WeightOnlyConfig(group_size=spec.group_size)

    def quantize(self, model_dir, spec, ctx):
        import torch
        from torchao.quantization import quantize_

        model = load_hf(model_dir, torch.bfloat16, ctx.device)
        quantize_(model, self._config(spec))
        return model

    streamed_methods = frozenset({"torchao-int8"})

    def stream_layer(self, layer, spec, ctx, place):
        import torch
        from torchao.quantization import quantize_

        layer = layer.to(torch.bfloat16)  # as the whole model is loaded to be quantized
        quantize_(layer, self._config(spec))
        return cast_plain(layer, ctx.compute_dtype)

    def stream_table(self, spec, role, rows, place):
        """quantize_ takes every linear, the head too; a tied head is the embedding again after the reload."""
        import torch
        from torchao.quantization import quantize_

        if role != "head" or place.arch.tie_word_embeddings:
            return rows
        head = torch.nn.Linear(rows.shape[1], rows.shape[0], bias=False, dtype=rows.dtype)
        head.weight = torch.nn.Parameter(rows, requires_grad=False)
        quantize_(head, self._config(spec))
        return head.weight.dequantize().float()

    def save(self, model, spec, out_dir):
        import torch

        torch.save(untied_state_dict(model), out_dir / WEIGHTS_FILE)
        model.config.save_pretrained(str(out_dir))

    def load(self, out_dir, spec, ctx):
        import torch

        model = empty_hf(out_dir, torch.bfloat16)
        # weights_only: no pickle runs code on load; torchao allow-lists its own tensor subclasses
        state = torch.load(out_dir / WEIGHTS_FILE, map_location=ctx.device, weights_only=True)
        model.load_state_dict(state, assign=True, strict=False)
        return use_compute_dtype(model.to(ctx.device), ctx.compute_dtype)


BACKEND = TorchAOBackend()

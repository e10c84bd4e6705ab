"""bitsandbytes: int8 (LLM.int8) and 4-bit nf4/fp4, loaded through transformers' BitsAndBytesConfig."""

from __future__ import annotations

import logging

from qadvisor.quantizers.base import Backend, cast_plain, load_hf, plain_linears, use_compute_dtype
from qadvisor.quantizers.storage import grouped, per_weight
from qadvisor.schemas.method import MethodSpec


class BitsAndBytesBackend(Backend):
    name = "bnb"
    stand_in = "bnb-nf4"
    package = "bitsandbytes"
    min_version = "0.49"  # first release with CPU kernels for int8 and 4-bit
    install_hint = "pip install 'bitsandbytes>=0.49'"
    methods = (
        MethodSpec(name="bnb-int8", backend="bnb", bits=8, scheme="int8", summary="LLM.int8 row-wise absmax"),
        MethodSpec(name="bnb-nf4", backend="bnb", bits=4, scheme="nf4", group_size=64, summary="4-bit NormalFloat, block 64"),
        MethodSpec(name="bnb-fp4", backend="bnb", bits=4, scheme="fp4", group_size=64, summary="4-bit float, block 64"),
    )
    storage = (per_weight("bnb-int8", 8, "in·out + fp32 row scale", row_scale_bytes=4),
               grouped("bnb-nf4", 4, 64, 4, 0, "in·out/2 + fp32 absmax per 64 (no double quantization)"),
               grouped("bnb-fp4", 4, 64, 4, 0, "in·out/2 + fp32 absmax per 64 (no double quantization)"))
    experts_left = "bitsandbytes replaces nn.Linear modules only"

    streamed_methods = frozenset(m.name for m in methods)

    def _config(self, spec, ctx):
        from transformers import BitsAndBytesConfig

        if spec.scheme == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=spec.scheme,
                                  bnb_4bit_compute_dtype=ctx.compute_dtype)

    def quantize(self, model_dir, spec, ctx):
        import torch

        # Unquantized layers keep bf16 on disk, as Qwen ships them.
        return load_hf(model_dir, torch.bfloat16, ctx.device, quantization_config=self._config(spec, ctx))

    def stream_layer(self, layer, spec, ctx, place):
        """transformers' own steps for one layer: its linears replaced by bnb's, each weight quantized on placing."""
        import bitsandbytes as bnb
        import torch
        from transformers.integrations.bitsandbytes import replace_with_bnb_linear

        if spec.scheme == "int8":
            quiet_int8_cast_warning()
        layer = layer.to(torch.bfloat16)  # as the whole model is loaded to be quantized
        plain = {name: (m.weight.data, m.bias) for name, m in plain_linears(layer).items()}
        replace_with_bnb_linear(layer, quantization_config=self._config(spec, ctx))
        kind = bnb.nn.Int8Params if spec.scheme == "int8" else bnb.nn.Params4bit
        for name, (weight, bias) in plain.items():
            module = layer.get_submodule(name)
            settings = {k: v for k, v in module.weight.__dict__.items() if k != "SCB"}
            module.weight = kind(weight, requires_grad=False, **settings).to(ctx.device)
            module.bias = None if bias is None else torch.nn.Parameter(bias.data, requires_grad=False)
        return generic_kernel_where_unpackable(cast_plain(layer, ctx.compute_dtype))

    def save(self, model, spec, out_dir):
        model.save_pretrained(str(out_dir))

    def load(self, out_dir, spec, ctx):
        import torch

        if spec.scheme == "int8" and ctx.compute_dtype != torch.float16:
            quiet_int8_cast_warning()
        return generic_kernel_where_unpackable(use_compute_dtype(load_hf(out_dir, torch.bfloat16, ctx.device),
                                                                 ctx.compute_dtype))


PACKED_ROWS = 32  # bitsandbytes' AVX512-BF16 CPU kernel packs 4-bit weights in blocks of this many output rows


def generic_kernel_where_unpackable(model):
    """On a CPU with AVX512-BF16, bitsandbytes repacks each 4-bit weight at its first forward and asserts that its
    output rows tile by 32; Qwen3.5's linear-attention projections (one row per value head: 16 on the small sizes)
    do not. Those modules take bitsandbytes' generic 4-bit kernel, the one every other CPU runs."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and module.out_features % PACKED_ROWS:
            module.support_avx512bf16_for_cpu = False
    return model


# bitsandbytes logs this at every int8 matmul whose input is not fp16: on a CPU computing in fp32, every linear of every
# token. Writing the lines took ~9 % of bnb-int8's generation time on the bundled model, a cost of the log, not of the
# method, so the timed model does not pay it; the trial's log says so once instead.
CAST_LOGGER = "bitsandbytes.autograd._functions"


def quiet_int8_cast_warning() -> None:
    logger = logging.getLogger(CAST_LOGGER)
    if logger.level < logging.ERROR:
        logger.warning("MatMul8bitLt casts non-fp16 inputs to float16 at every matmul; this warning is muted from here on")
        logger.setLevel(logging.ERROR)  # that logger says nothing else (bitsandbytes 0.50)


BACKEND = BitsAndBytesBackend()

"""AWQ through GPTQModel: 4-bit weights in groups of 128 like Qwen's own AWQ releases, each group's scale chosen
from the activations of the calibration text (activation-aware), stored in the AWQ GEMM format."""

from __future__ import annotations

from qadvisor.quantizers.gptq import (GPTQBackend, _bf16_storage, _calibration, _config_inputs, layer_progress,
                                      rounds_to_nearest)
from qadvisor.quantizers.storage import grouped
from qadvisor.schemas.method import MethodSpec

GROUP_SIZE = 128


class AWQBackend(GPTQBackend):
    name = "awq"
    stand_in = "awq-int4"
    uncalibrated_note = ("AWQ codes rounded to nearest (GPTQModel's RTNConfig), not calibrated: random weights; the "
                         "same AWQ GEMM format and kernel, so its size and speed are AWQ's")
    methods = (MethodSpec(name="awq-int4", backend="awq", bits=4, scheme="int4", group_size=GROUP_SIZE,
                          summary=f"AWQ 4-bit, group {GROUP_SIZE}, activation-aware scales from the calibration"),)
    storage = (grouped("awq-int4", 4, GROUP_SIZE, 2, 4, "in·out/2 + per-128 group fp16 scale and 4-bit zero",
                       notes="as GPTQModel writes it (lm_head tied as the model ties it); Qwen's AutoAWQ releases of "
                             "tied models store an lm_head copy too (+vocab·hidden·2 bytes while loading)"),)
    streamed_methods = frozenset()

    def quantize(self, model_dir, spec, ctx):
        import torch
        from gptqmodel.quantization.config import FORMAT, AWQConfig, RTNConfig
        from gptqmodel.utils.backend import BACKEND
        from transformers import AutoTokenizer

        from qadvisor.quantizers.awq_clip import matmul_clip_search  # imports torch: only where AWQ runs

        GPTQModel, _ = self._import(ctx)
        bits = int(spec.bits)
        if ctx.calibrate or not rounds_to_nearest(model_dir):
            config = AWQConfig(bits=bits, group_size=spec.group_size, offload_to_disk=False)
            calib = _calibration(AutoTokenizer.from_pretrained(str(model_dir)), ctx.calib_texts, _config_inputs(model_dir))
        else:  # random weights: the same format, rounded to nearest
            config = RTNConfig(bits=bits, group_size=spec.group_size, format=FORMAT.GEMM, offload_to_disk=False)
            calib = None
        # GPTQModel's portable AWQ kernel (the one that runs on a CPU) packs from bf16 or fp16 only
        dtype = ctx.work_dtype if ctx.work_dtype != torch.float32 else torch.bfloat16
        wrapped = GPTQModel.load(str(model_dir), config, device=ctx.device, dtype=dtype)
        with layer_progress(wrapped, ctx), matmul_clip_search():
            wrapped.quantize(calib, batch_size=4, backend=BACKEND.AWQ_TORCH)
        return _bf16_storage(wrapped)


BACKEND = AWQBackend()

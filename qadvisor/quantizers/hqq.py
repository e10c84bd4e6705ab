"""HQQ (half-quadratic quantization, calibration-free) through its own AutoHQQHFModel API.

transformers' HqqConfig path is broken on transformers 5.x, so the library's API is used directly.
"""

from __future__ import annotations

from qadvisor.models.method import MethodSpec
from qadvisor.quantizers.base import Backend, load_hf, use_compute_dtype

GROUP_SIZE = 64


class HQQBackend(Backend):
    name = "hqq"
    package = "hqq"
    min_version = "0.2"
    install_hint = "pip install hqq"
    methods = tuple(
        MethodSpec(name=f"hqq-int{b}", backend="hqq", bits=b, scheme=f"int{b}", group_size=GROUP_SIZE,
                   summary=f"HQQ {b}-bit, group {GROUP_SIZE}, no calibration")
        for b in (4, 3, 2)
    )

    def quantize(self, model_dir, spec, ctx):
        import torch
        from hqq.core.quantize import BaseQuantizeConfig
        from hqq.models.hf.base import AutoHQQHFModel

        model = load_hf(model_dir, torch.bfloat16, "cpu")
        config = BaseQuantizeConfig(nbits=int(spec.bits), group_size=spec.group_size)
        AutoHQQHFModel.quantize_model(model, quant_config=config, compute_dtype=torch.bfloat16, device=ctx.device)
        return model

    def save(self, model, spec, out_dir):
        from hqq.models.hf.base import AutoHQQHFModel

        AutoHQQHFModel.save_quantized(model, str(out_dir))

    def load(self, out_dir, spec, ctx):
        from hqq.models.hf.base import AutoHQQHFModel

        model = AutoHQQHFModel.from_quantized(str(out_dir), compute_dtype=ctx.compute_dtype, device=ctx.device)
        return use_compute_dtype(model, ctx.compute_dtype)


BACKEND = HQQBackend()

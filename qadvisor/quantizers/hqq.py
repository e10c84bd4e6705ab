"""HQQ (half-quadratic quantization, calibration-free) through its own AutoHQQHFModel API.

transformers' HqqConfig path is broken on transformers 5.x, so the library's API is used directly.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from qadvisor.quantizers.base import Backend, cast_plain, load_hf, plain_linears, use_compute_dtype
from qadvisor.quantizers.storage import grouped
from qadvisor.schemas.method import MethodSpec

GROUP_SIZE = 64
# HQQ's solver runs ~20 elementwise iterations over every weight: ~0.2 µs per weight element eagerly on 2 cores, a
# few times less fused by torch.compile, whose first compile costs seconds. Qwen2.5-0.5B has 358 M weights in its
# linears: 70 s eager, 24 s fused on 2 Intel AMX cores (benchmarks/RESULTS.md, Machine C); the bundled model has 14 M,
# a few seconds either way, too few to pay for a compile.
FUSE_FROM_ELEMENTS = 100_000_000

log = logging.getLogger(__name__)


class HQQBackend(Backend):
    name = "hqq"
    stand_in = "hqq-int4"
    package = "hqq"
    min_version = "0.2"
    install_hint = "pip install hqq"
    methods = tuple(
        MethodSpec(name=f"hqq-int{b}", backend="hqq", bits=b, scheme=f"int{b}", group_size=GROUP_SIZE,
                   summary=f"HQQ {b}-bit, group {GROUP_SIZE}, no calibration")
        for b in (4, 3, 2)
    )
    storage = (grouped("hqq-int4", 4, 64, 2, 16, "in·out/2 + fp16 scale and zero per 64"),
               grouped("hqq-int3", 3, 64, 2, 16, "10 3-bit values per 32-bit word + fp16 scale and zero per 64",
                       stored_bits=3.2),
               grouped("hqq-int2", 2, 64, 2, 16, "in·out/4 + fp16 scale and zero per 64"))
    experts_left = "HQQ replaces nn.Linear modules only"

    def quantize(self, model_dir, spec, ctx):
        import torch
        from hqq.core.quantize import BaseQuantizeConfig
        from hqq.models.hf.base import AutoHQQHFModel

        model = load_hf(model_dir, torch.bfloat16, "cpu")
        config = BaseQuantizeConfig(nbits=int(spec.bits), group_size=spec.group_size)
        weights = _linear_elements(model)
        fuse = ctx.device == "cpu" and weights["elements"] >= FUSE_FROM_ELEMENTS  # on a GPU the solver is fast
        with _reported(ctx, weights["count"]), _fused_solver(fuse):
            AutoHQQHFModel.quantize_model(model, quant_config=config, compute_dtype=torch.bfloat16, device=ctx.device)
        return model

    streamed_methods = frozenset(m.name for m in methods)

    def stream_layer(self, layer, spec, ctx, place):
        """Each linear through HQQLinear as quantize_model makes it (bf16), then loaded back as from_quantized does
        (the compute dtype)."""
        import torch
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

        config = BaseQuantizeConfig(nbits=int(spec.bits), group_size=spec.group_size)
        layer = layer.to(torch.bfloat16)  # as the whole model is loaded to be quantized
        for name, linear in plain_linears(layer).items():
            made = HQQLinear(linear, config, compute_dtype=torch.bfloat16, device=ctx.device)
            loaded = HQQLinear(None, None, compute_dtype=ctx.compute_dtype, device=ctx.device)
            loaded.load_state_dict(made.state_dict())
            layer.set_submodule(name, loaded)
        return cast_plain(layer, ctx.compute_dtype)

    def save(self, model, spec, out_dir):
        from hqq.models.hf.base import AutoHQQHFModel
        from safetensors.torch import save_file

        AutoHQQHFModel.save_quantized(model, str(out_dir))
        own = _branch_parameters(model)
        if own:  # HQQ serialises leaf modules only: a linear-attention layer's decay (A_log, dt_bias) would be lost
            save_file({name: p.detach().contiguous() for name, p in own.items()}, str(Path(out_dir) / EXTRA_FILE))

    def load(self, out_dir, spec, ctx):
        from hqq.models.hf.base import AutoHQQHFModel
        from safetensors.torch import load_file

        model = AutoHQQHFModel.from_quantized(str(out_dir), compute_dtype=ctx.compute_dtype, device=ctx.device)
        extra = Path(out_dir) / EXTRA_FILE
        if extra.is_file():
            for name, tensor in load_file(str(extra)).items():
                module, _, attr = name.rpartition(".")
                setattr(model.get_submodule(module), attr, torch_parameter(tensor))
        return use_compute_dtype(model, ctx.compute_dtype)


EXTRA_FILE = "hqq-branch-parameters.safetensors"


def _branch_parameters(model) -> dict:
    """Parameters held directly by a module that has submodules (Qwen3.5's GatedDeltaNet: A_log, dt_bias)."""
    return {f"{name}.{attr}": p for name, module in model.named_modules() if name and any(module.children())
            for attr, p in module.named_parameters(recurse=False)}


def torch_parameter(tensor):
    import torch

    return torch.nn.Parameter(tensor, requires_grad=False)


def _linear_elements(model) -> dict:
    """How many linears HQQ quantizes (all but the head) and their weight elements."""
    import torch

    linears = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name != "lm_head"]
    return {"count": len(linears), "elements": sum(m.weight.numel() for m in linears)}


@contextmanager
def _reported(ctx, count: int):
    """Progress per linear: HQQ's solver is called once for each, and quantizing Qwen2.5-0.5B takes a minute."""
    from hqq.core.quantize import Quantizer

    solver, done = Quantizer.optimize_weights, [0]

    def counted(*args, **kwargs):
        done[0] += 1
        ctx.progress("quantize", done[0] / max(count, 1), f"linear {done[0]}/{count}")
        return solver(*args, **kwargs)

    Quantizer.optimize_weights = counted
    try:
        yield
    finally:
        Quantizer.optimize_weights = solver


@contextmanager
def _fused_solver(fuse: bool):
    """HQQ's own solver step (the function its authors left a torch.compile line over) compiled: the same
    arithmetic in one pass over the weights instead of a dozen; dynamic shapes, so one compile for every linear."""
    import hqq.core.optimize as optimize

    step = getattr(optimize, "optimize_weights_proximal_legacy_step", None)
    if not fuse or step is None:
        yield
        return
    import torch

    log.info("hqq: solver step fused with torch.compile (large model)")
    optimize.optimize_weights_proximal_legacy_step = torch.compile(step, dynamic=True)
    try:
        yield
    finally:
        optimize.optimize_weights_proximal_legacy_step = step


BACKEND = HQQBackend()

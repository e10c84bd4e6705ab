"""optimum-quanto: weight-only int8 / int4 / int2 with per-group scales."""

from __future__ import annotations

import json
from contextlib import contextmanager
from types import SimpleNamespace

from qadvisor.schemas.method import MethodSpec
from qadvisor.quantizers.base import Backend, empty_hf, load_hf, skipped_init, tie_head, untied_state_dict
from qadvisor.quantizers.storage import grouped, per_weight

QMAP_FILE = "quanto_qmap.json"


class QuantoBackend(Backend):
    name = "quanto"
    stand_in = "quanto-int8"
    package = "optimum-quanto"
    install_hint = "pip install optimum-quanto"
    methods = tuple(
        MethodSpec(name=f"quanto-int{b}", backend="quanto", bits=b, scheme=f"int{b}",
                   group_size=None if b == 8 else 128, summary=f"quanto weight-only int{b}")
        for b in (8, 4, 2)
    )
    storage = (per_weight("quanto-int8", 8, "in·out + bf16 per-channel scale", row_scale_bytes=2),
               grouped("quanto-int4", 4, 128, 2, 16, "in·out/2 + bf16 scale and shift per 128"),
               grouped("quanto-int2", 2, 128, 2, 16, "in·out/4 + bf16 scale and shift per 128"))
    experts_left = "quanto replaces nn.Linear modules only"

    def _qtype(self, spec):
        from optimum import quanto

        return {8: quanto.qint8, 4: quanto.qint4, 2: quanto.qint2}[int(spec.bits)]

    def _dtype(self, spec):
        """int4/int2 use quanto's bf16-only packed kernel; its int8 path crashes after a bf16 reload on CPU
        (SIGSEGV, seen with optimum-quanto 0.2.7), so int8 quantizes and computes in fp32."""
        import torch

        return torch.float32 if spec.bits == 8 else torch.bfloat16

    streamed_methods = frozenset(m.name for m in methods)

    def stream_layer(self, layer, spec, ctx, place):
        """quanto's own quantize and freeze on one layer, in the kernel's layout the reloaded model uses."""
        import torch
        from optimum.quanto import freeze, quantize

        layer = layer.to(self._dtype(spec))
        with torch.no_grad(), _unpack_in_torch():
            quantize(layer, weights=self._qtype(spec))
            freeze(layer)
        return layer

    def stream_dtype(self, spec):
        return self._dtype(spec)

    def quantize(self, model_dir, spec, ctx):
        import torch
        from optimum.quanto import freeze, quantize

        model = load_hf(model_dir, self._dtype(spec), ctx.device)
        with torch.no_grad(), _plain_layout():
            quantize(model, weights=self._qtype(spec), exclude="lm_head")
            freeze(model)
        return model  # only saved: the measured model is the reloaded one, in the kernel's layout

    def save(self, model, spec, out_dir):
        from optimum.quanto import quantization_map
        from safetensors.torch import save_file

        import torch

        qmap = quantization_map(model)
        state = untied_state_dict(model)
        for key, value in state.items():
            if value.dtype == torch.float32 and not _is_quantized_part(key, qmap):
                state[key] = value.to(torch.bfloat16)  # embeddings, norms, biases stored as Qwen ships them
        save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "model.safetensors"))
        (out_dir / QMAP_FILE).write_text(json.dumps(qmap))
        model.config.save_pretrained(str(out_dir))

    def load(self, out_dir, spec, ctx):
        import torch
        from optimum.quanto import requantize
        from safetensors.torch import load_file

        model = empty_hf(out_dir, self._dtype(spec))
        qmap = json.loads((out_dir / QMAP_FILE).read_text())
        with skipped_init(), _unpack_in_torch():  # requantize builds a fresh QLinear for every linear, then loads
            requantize(model, load_file(str(out_dir / "model.safetensors")), qmap, device=torch.device(ctx.device))
        return tie_head(model)  # computes in the dtype it was quantized in (see _dtype)

    def memory_bytes(self, model):
        """The tensors the model holds, not its state dict: on CPU the int4 weights are held in tinygemm's packed
        layout, and writing a state dict unpacks each by a matmul with an identity matrix (10 s at Qwen2.5-0.5B's
        shape); the packed parts take the same bytes."""
        from itertools import chain

        from qadvisor.quantizers.tensors import tensor_bytes

        return tensor_bytes(model, chain(model.parameters(), model.buffers()))


@contextmanager
def _plain_layout():
    """Quantized weights in quanto's plain layout while quantizing. For int4 bf16 weights on CPU quanto picks
    tinygemm's packed layout, and saving it unpacks each weight by a matmul with an identity matrix (9 s at
    Qwen2.5-0.5B's shape, benchmarks/RESULTS.md, Machine C); the file is the plain layout either way, and the
    reload packs it for tinygemm as before."""
    from optimum.quanto.tensor.weights.qbits import WeightQBitsTensor

    create = WeightQBitsTensor.create

    def plain(qtype, axis, group_size, size, stride, data, scale, shift, requires_grad=False):
        return WeightQBitsTensor(qtype, axis, group_size, size, stride, data, scale, shift, requires_grad)

    WeightQBitsTensor.create = staticmethod(plain)
    try:
        yield
    finally:
        WeightQBitsTensor.create = staticmethod(create)


@contextmanager
def _unpack_in_torch():
    """quanto's C++ unpack is built on its first use (25 s of a new machine's first run). An int4 weight on CPU is
    unpacked once, into tinygemm's layout, when it is frozen or reloaded: quanto's own torch unpack gives the same codes
    as fast there. Where a forward unpacks (int2 weights, a KV cache) the extension is built and used as quanto would."""
    import torch
    from optimum.quanto.library.extensions.cpp import ext

    if ext._lib is not None:  # built and loaded in this process already
        yield
        return
    op = torch.ops.quanto.unpack.default
    in_torch = torch._C.DispatchKey.CompositeExplicitAutograd  # the key quanto registers its torch unpack under
    ext._lib = SimpleNamespace(unpack=lambda packed, bits: op._op_dk(in_torch, packed, bits))
    try:
        yield
    finally:
        ext._lib = None


def _is_quantized_part(key: str, qmap: dict) -> bool:
    module = key.rsplit(".", 1)[0]
    return any(key.startswith(f"{name}.weight.") or module == name and key.endswith("_scale") for name in qmap)


BACKEND = QuantoBackend()

"""GPTQModel's CPU kernel compiles once per weight shape under qadvisor, not once per layer (quantizers.gptq)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gptqmodel")


def _layers(count):
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear

    layers = [TorchLinear(bits=2, group_size=128, sym=True, desc_act=False, in_features=256, out_features=256)
              for _ in range(count)]
    for layer in layers:
        layer.eval()
        layer.post_init()  # where GPTQModel wraps the dequantize step in torch.compile
    return layers


def _run(layers):
    x = torch.randn(1, 256, dtype=torch.float16)
    with torch.no_grad():
        for _ in range(2):  # the kernel fills its caches on the first call and reads them on the next
            for layer in layers:
                layer(x)


def test_more_layers_of_one_shape_compile_nothing_new():
    from torch._dynamo.utils import counters

    from qadvisor.quantizers.gptq import _compile_per_shape

    _compile_per_shape()
    _compile_per_shape()  # idempotent: a second load in the process must not wrap the lookups twice
    _run(_layers(2))
    frames = counters["frames"]["total"]
    _run(_layers(6))
    assert counters["frames"]["total"] == frames  # without it: one or two more frames per layer

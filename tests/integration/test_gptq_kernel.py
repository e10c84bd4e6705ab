"""GPTQModel under qadvisor (quantizers.gptq): its CPU kernel compiles once per weight shape, not once per layer; its
packing needs no C++ build on a new machine."""

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


def test_packing_builds_no_extension(monkeypatch):
    from types import SimpleNamespace

    import gptqmodel.nn_modules.qlinear.pack_block_ext as pack_ext
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear

    from qadvisor.quantizers import gptq

    monkeypatch.delenv(gptq.PACK_EXT_OFF, raising=False)
    gptq.BACKEND._import(SimpleNamespace(threads=2))
    monkeypatch.setattr(pack_ext, "load_pack_block_extension", lambda: pytest.fail("GPTQModel built its C++ packer"))
    linear = torch.nn.Linear(256, 64, bias=False)
    scales, zeros = torch.full((64, 2), 0.01), torch.full((64, 2), 8.0)
    layer = TorchLinear(bits=4, group_size=128, sym=True, desc_act=False, in_features=256, out_features=64)
    layer.pack_block(linear, scales, zeros, torch.arange(256) // 128)
    assert layer.qweight.shape == (256 * 4 // 32, 64)

"""Reloading a saved model skips drawing random weights only to overwrite them, and changes nothing
(quantizers.base.empty_hf; 10 s of every torchao / quanto reload at Qwen2.5-0.5B's shape)."""

import contextlib

import pytest

from tests.conftest import BUNDLED

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("method", ["quanto-int4", "torchao-int8"])
def test_a_reload_without_initialising_gives_the_same_logits_and_a_tied_head(tmp_path, monkeypatch, method):
    from qadvisor.quantizers import base, quanto, registry
    from qadvisor.quantizers.base import TrialContext

    spec = registry.methods()[method]
    backend = registry.backend_for(spec)
    ctx = TrialContext(threads=2)
    backend.save(backend.quantize(BUNDLED, spec, ctx), spec, tmp_path)
    ids = torch.randint(0, 1000, (1, 32))
    logits = {}
    for mode, context in (("skipped", base.skipped_init), ("initialised", contextlib.nullcontext)):
        monkeypatch.setattr(base, "skipped_init", context)
        monkeypatch.setattr(quanto, "skipped_init", context)
        model = backend.load(tmp_path, spec, ctx)
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # the bundled model ties
        with torch.inference_mode():
            logits[mode] = model(ids).logits
    assert torch.equal(logits["skipped"], logits["initialised"])


def test_quanto_counts_its_packed_weights_without_unpacking_them(tmp_path):
    """quanto's memory count walks the tensors the model holds (int4 stays in tinygemm's packed layout) instead of a
    state dict, which unpacks every int4 weight (10 s at Qwen2.5-0.5B's shape): the same bytes, plus the buffers a
    state dict leaves out (the rotary table)."""
    from qadvisor.quantizers import registry
    from qadvisor.quantizers.base import TrialContext
    from qadvisor.quantizers.tensors import nbytes, tensor_bytes

    spec = registry.methods()["quanto-int4"]
    backend, ctx = registry.backend_for(spec), TrialContext(threads=2)
    backend.save(backend.quantize(BUNDLED, spec, ctx), spec, tmp_path)
    model = backend.load(tmp_path, spec, ctx)
    saved = set(model.state_dict())
    unsaved = sum(nbytes(b) for name, b in model.named_buffers() if name not in saved)
    assert backend.memory_bytes(model) == tensor_bytes(model) + unsaved


def test_quanto_int4_saves_the_same_file_without_tinygemms_round_trip(tmp_path, monkeypatch):
    """quanto-int4 quantizes to the plain layout (saving tinygemm's packed one unpacks each weight by a matmul with an
    identity matrix: 9 s at Qwen2.5-0.5B's shape): the saved tensors are the same, and the reload still runs the
    tinygemm kernel."""
    from safetensors.torch import load_file

    from qadvisor.quantizers import quanto, registry
    from qadvisor.quantizers.base import TrialContext

    spec = registry.methods()["quanto-int4"]
    ctx = TrialContext(threads=2)
    for mode in ("plain", "tinygemm"):
        if mode == "tinygemm":
            monkeypatch.setattr(quanto, "_plain_layout", contextlib.nullcontext)
        model = quanto.BACKEND.quantize(BUNDLED, spec, ctx)
        layout = type(model.model.layers[0].mlp.up_proj.weight).__name__
        assert layout == ("WeightQBitsTensor" if mode == "plain" else "TinyGemmWeightQBitsTensor")
        (tmp_path / mode).mkdir()
        quanto.BACKEND.save(model, spec, tmp_path / mode)
    plain, packed = (load_file(str(tmp_path / mode / "model.safetensors")) for mode in ("plain", "tinygemm"))
    assert plain.keys() == packed.keys()
    assert all(torch.equal(plain[k], packed[k]) for k in plain)
    reloaded = quanto.BACKEND.load(tmp_path / "plain", spec, ctx)
    assert type(reloaded.model.layers[0].mlp.up_proj.weight).__name__ == "TinyGemmWeightQBitsTensor"


def test_a_quanto_int4_reload_builds_no_extension_and_gives_the_same_logits(tmp_path, monkeypatch):
    """quanto's C++ unpack is built on first use (25 s of a new machine's first run); an int4 reload unpacks each weight
    once, into tinygemm's layout, with quanto's torch unpack instead: the same model as with the extension."""
    from optimum.quanto.library.extensions import extension
    from optimum.quanto.library.extensions.cpp import ext

    from qadvisor.quantizers import quanto, registry
    from qadvisor.quantizers.base import TrialContext

    spec, ctx = registry.methods()["quanto-int4"], TrialContext(threads=2)
    quanto.BACKEND.save(quanto.BACKEND.quantize(BUNDLED, spec, ctx), spec, tmp_path)
    monkeypatch.setattr(ext, "_lib", None)
    with monkeypatch.context() as patch:
        patch.setattr(extension, "load", lambda **_: pytest.fail("quanto's C++ extension was built"))
        in_torch = quanto.BACKEND.load(tmp_path, spec, ctx)
    assert ext._lib is None  # a forward that unpacks (int2, a KV cache) builds it as quanto would
    assert ext.lib is not None  # built (or loaded) now: the reload below unpacks in C++
    with_extension = quanto.BACKEND.load(tmp_path, spec, ctx)
    ids = torch.randint(0, 1000, (1, 32))
    with torch.inference_mode():
        assert torch.equal(in_torch(ids).logits, with_extension(ids).logits)

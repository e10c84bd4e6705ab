"""Reloading a saved model skips drawing random weights only to overwrite them, and changes nothing
(quantizers.base.empty_hf; 10 s of every torchao / quanto reload at Qwen2.5-0.5B's shape)."""

import contextlib

import pytest

from tests.conftest import SHIPPED

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("method", ["quanto-int4", "torchao-int8"])
def test_a_reload_without_initialising_gives_the_same_logits_and_a_tied_head(tmp_path, monkeypatch, method):
    from qadvisor.quantizers import base, quanto, registry
    from qadvisor.quantizers.base import TrialContext

    spec = registry.methods()[method]
    backend = registry.backend_for(spec)
    ctx = TrialContext(threads=2)
    backend.save(backend.quantize(SHIPPED, spec, ctx), spec, tmp_path)
    ids = torch.randint(0, 1000, (1, 32))
    logits = {}
    for mode, context in (("skipped", base.skipped_init), ("initialised", contextlib.nullcontext)):
        monkeypatch.setattr(base, "skipped_init", context)
        monkeypatch.setattr(quanto, "skipped_init", context)
        model = backend.load(tmp_path, spec, ctx)
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # the shipped model ties
        with torch.inference_mode():
            logits[mode] = model(ids).logits
    assert torch.equal(logits["skipped"], logits["initialised"])

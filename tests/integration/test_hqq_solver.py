"""HQQ's solver step fused by torch.compile on a large model quantizes as the eager one does, and a quantization
reports its progress per linear (quantizers.hqq)."""

import pytest

from tests.conftest import BUNDLED

torch = pytest.importorskip("torch")
pytest.importorskip("hqq")


def _quantize(monkeypatch, fuse_from):
    from hqq.core.quantize import HQQLinear

    from qadvisor.quantizers import hqq, registry
    from qadvisor.quantizers.base import TrialContext

    monkeypatch.setattr(hqq, "FUSE_FROM_ELEMENTS", fuse_from)
    seen = []
    ctx = TrialContext(threads=2, progress=lambda step, fraction, message: seen.append((step, fraction, message)))
    model = hqq.BACKEND.quantize(BUNDLED, registry.methods()["hqq-int4"], ctx)
    weights = {name: m.dequantize().float() for name, m in model.named_modules() if isinstance(m, HQQLinear)}
    return weights, seen


def test_the_fused_solver_quantizes_as_the_eager_one(monkeypatch, caplog):
    import logging

    import hqq.core.optimize as optimize

    caplog.set_level(logging.INFO, logger="qadvisor.quantizers.hqq")

    eager_step = optimize.optimize_weights_proximal_legacy_step
    eager, seen = _quantize(monkeypatch, fuse_from=10**15)  # the bundled model is far too small to fuse
    assert "fused" not in caplog.text
    fused, _ = _quantize(monkeypatch, fuse_from=0)
    assert "solver step fused with torch.compile" in caplog.text
    assert optimize.optimize_weights_proximal_legacy_step is eager_step  # put back after quantizing
    assert eager.keys() == fused.keys() and len(eager) == 56
    for name, weight in eager.items():
        # the same codes bar rounding: a code one step off here and there moves a weight by one group's scale
        assert (weight - fused[name]).abs().mean() < 1e-3 * weight.abs().mean(), name
    assert seen[-1] == ("quantize", 1.0, "linear 56/56") and len(seen) == 56

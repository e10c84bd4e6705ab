"""A second run reuses the quantized models (and measures again); --no-cache quantizes again."""

import pytest

from qadvisor.core.hardware import detect
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.runner import Run, RunRequest


def _run(cache_dir, reuse=True):
    request = RunRequest(methods=["bnb-nf4", "gguf-q8_0"], cache_dir=cache_dir, reuse_cache=reuse,
                         settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2))
    run = Run(request, detect(with_backends=False))
    list(run.events())
    return {r.method: r for r in run.results}


def test_second_run_reuses_quantized_models_and_no_cache_refreshes_them(tmp_path):
    first = _run(tmp_path)
    second = _run(tmp_path)
    third = _run(tmp_path, reuse=False)
    for method in ("bnb-nf4", "gguf-q8_0"):
        a, b, c = first[method], second[method], third[method]
        assert a.status == b.status == c.status == "ok"
        assert not a.cached and b.cached and not c.cached
        assert "quantize" in a.step_s and "quantize" not in b.step_s and "quantize" in c.step_s
        assert b.quantize_s == pytest.approx(a.quantize_s)  # the time it took when the entry was made
        assert b.size_bytes == a.size_bytes and b.kl_mean == pytest.approx(a.kl_mean, rel=1e-6)
        assert b.decode_tok_s is not None and b.start_s is not None  # measured again in this run
    assert len([p for p in (tmp_path / "artifacts").iterdir() if not p.name.startswith(".")]) == 2

"""synthetic:Qwen2.5-0.5B: random weights at the real shape through the real backends, checked against the planner."""

import pytest

from qadvisor.schemas.export import load_export
from tests.conftest import run_cli


def test_planner_size_within_10_percent_on_the_real_0_5b_shape(tmp_path):
    out = tmp_path / "synthetic.json"
    proc = run_cli("--auto", "--model", "synthetic:Qwen2.5-0.5B", "--methods", "bnb-nf4,quanto-int4,gguf-q4_k_m",
                   "--repeats", "1", "--decode-tokens", "4", "--export", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    export = load_export(out)
    assert export.model.params == 494_032_768 and export.model.ref_ppl is None
    assert all(r.status == "ok" and r.kl_mean is None and "random weights" in r.reason for r in export.results)
    assert {c.method for c in export.plan_check} == {"bnb-nf4", "quanto-int4", "gguf-q4_k_m"}
    for check in export.plan_check:
        assert abs(check.error_pct) < 10, check
        # memory after reload at the run's compute dtype, and the KV cache, also from the planner's formulas
        assert check.predicted_mem_bytes == pytest.approx(check.measured_mem_bytes, rel=0.10), check
        if not check.method.startswith("gguf-"):  # llama.cpp's KV cache lives inside its context
            assert check.predicted_kv_bytes == pytest.approx(check.measured_kv_bytes, rel=0.01), check
    assert export.recommendation.method is None  # nothing to weigh without accuracy

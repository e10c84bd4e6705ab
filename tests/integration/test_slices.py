"""`qadvisor plan --measure` end to end on slices of the bundled model's shape (8 layers: slices of 2 and 4)."""

import json

import pytest

from tests.conftest import BUNDLED, run_cli

pytestmark = pytest.mark.slow


def test_plan_measure_projects_every_layer_from_two_real_slices(tmp_path):
    proc = run_cli("plan", "--model", str(BUNDLED), "--measure", "--methods", "gguf-q8_0,quanto-int4,gptq-int4", "--json",
                   env={"QADVISOR_CACHE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    said = " ".join(proc.stderr.split())  # the console wraps long lines
    assert "gguf-q8_0 @4L: save" in said and "gguf-q8_0 @2L + @4L: benchmark" in said  # progress for every step
    rows = {r["method"]: r for r in plan["plans"]}
    assert "rounded to nearest" in rows["gptq-int4"]["projection"]["basis"]  # no hours of calibration on slices
    for method in ("gguf-q8_0", "quanto-int4", "gptq-int4"):
        p = rows[method]["projection"]
        assert p["label"] == "projected" and p["layers_measured"] == [2, 4] and p["layers_projected"] == 8
        assert "slices of 2 and 4 decoder layers" in p["basis"] and p["device"].startswith("cpu")
        assert all(v > 0 for v in p["measured_decode_tok_s"] + p["measured_prefill_tok_s"])
        if p["decode_tok_s"] is not None:  # two depths a noisy machine could not tell apart give no number
            assert rows[method]["projected_decode_tok_s"] == p["decode_tok_s"]
            # 8 layers cost more than 4: the projection is slower than the deeper slice measured
            assert p["decode_tok_s"] < p["measured_decode_tok_s"][1]
    assert plan["disk_read_gb_s"] is None or plan["disk_read_gb_s"] > 0
    slices = sorted(p.name for p in (tmp_path / "synthetic").iterdir())
    assert slices == ["qwen2-tiny-stdlib-2L", "qwen2-tiny-stdlib-4L"]  # cached for the next run, where `qadvisor cache` lists them

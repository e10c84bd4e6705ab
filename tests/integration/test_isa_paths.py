"""`qadvisor doctor` as a user runs it, and the paths other CPUs take, exercised here: every backend's stand-in
under torch's generic and AVX2 kernels, with bf16 quantizing forced off and on, on one and two threads. A path that
breaks only on an AVX2-only or a non-AMX machine breaks here first. llama.cpp's safe levels are run side by side in
test_llamacpp."""

import json

import pytest

from qadvisor.app.doctor import stand_in_methods
from tests.conftest import run_cli

# AWQ's scale search takes a minute or more on 2 cores (in bf16, a crawl under torch's generic kernels); its calibrated
# trial is tests/integration/test_awq.py's, the same Run, so the doctor runs here leave it out (`--backends`)
VARIANTS = {
    "generic-fp32-1thread": ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                              "QADVISOR_FAST_BF16": "0"}, "1", ("awq",)),
    "avx2-bf16-2threads": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "QADVISOR_FAST_BF16": "1"},
                           "2", ("awq",)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_doctor_runs_every_backend_under_a_lower_instruction_set(variant, tmp_path):
    env, threads, left_out = VARIANTS[variant]
    chosen = [b for b in stand_in_methods() if b not in left_out]
    proc = run_cli("doctor", "--threads", threads, "--backends", ",".join(chosen),
                   env={**env, "QADVISOR_CACHE": str(tmp_path)}, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "Backends tried on a tiny model" in proc.stdout and f"{threads} threads" in proc.stdout
    report = json.loads((tmp_path / "probes" / "doctor.json").read_text())  # kept for runs and the TUI
    assert report["threads"] == int(threads) and 0.0 <= report["cpu_contention"] <= 1.0
    verdicts = {r["backend"]: (r["verdict"], r["detail"]) for r in report["rows"]}
    assert set(verdicts) == set(chosen)
    broken = {b: v for b, v in verdicts.items() if v[0] not in ("works", "works with a fallback", "not installed")}
    assert not broken, broken
    for calibrated in {"gptq", "awq"} & set(chosen):  # their solvers ran, not a cached file or round-to-nearest
        if verdicts[calibrated][0] != "not installed":
            assert "calibrated on 8 paragraphs of the bundled text" in verdicts[calibrated][1], verdicts[calibrated]

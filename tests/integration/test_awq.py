"""awq-int4 on the bundled model through GPTQModel's AWQ: calibrated, saved in the AWQ GEMM format, sized as the
planner says, measured and open to the advisor like any method."""

import json

from qadvisor.core import architectures
from qadvisor.core.plan import planner
from qadvisor.schemas.export import load_export
from tests.conftest import run_cli


def test_awq_int4_is_measured_sized_by_the_planner_and_can_be_picked(tmp_path):
    out, kept = tmp_path / "run.json", tmp_path / "kept"
    proc = run_cli("--auto", "--methods", "fp32,awq-int4", "--repeats", "2", "--profile", "storage-first",
                   "--export", str(out), "--keep-models", str(kept), env={"QADVISOR_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    export = load_export(out)
    awq = next(r for r in export.results if r.method == "awq-int4")
    assert awq.status == "ok" and awq.backend == "awq" and awq.kl_mean > 0, awq.reason
    arch = architectures.resolve_architecture(export.model.path)
    predicted, _ = planner.weights_bytes(arch, planner.formats()["awq-int4"])
    assert abs(predicted / awq.size_bytes - 1) < 0.01  # the planner describes the file the trial wrote
    config = json.loads((kept / "awq-int4" / "quantize_config.json").read_text())
    assert (config["quant_method"], config["format"], config["bits"], config["group_size"]) == ("awq", "gemm", 4, 128)
    assert "awq-int4" in export.recommendation.scores  # the advisor weighs it like any other method
    again = tmp_path / "shipped.json"  # the kept folder, measured as shipped against the bundled model: the same numbers
    proc = run_cli("--auto", "--model", str(kept / "awq-int4"), "--reference", export.model.path, "--repeats", "2",
                   "--export", str(again), env={"QADVISOR_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    shipped = load_export(again).results[0]
    assert (shipped.method, shipped.size_bytes) == ("as-shipped:awq-int4", awq.size_bytes)
    assert abs(shipped.ppl / awq.ppl - 1) < 0.01 and abs(shipped.kl_mean / awq.kl_mean - 1) < 0.01

"""A --cluster export: results tagged by node and hardware kind, advice per kind, every face per kind, and
`compare` across the kinds of one export. No Ray here (tests/integration/test_cluster.py starts a real one)."""

from qadvisor.app.advice import readvise
from qadvisor.app.report import markdown
from qadvisor.app.views import per_kind
from qadvisor.core.hardware import hardware_kind
from qadvisor.schemas.export import save_export
from qadvisor.schemas.priorities import load_profile
from tests.conftest import run_cli
from tests.samples import sample_export, two_kind_export


def test_identical_hardware_is_one_kind_and_different_hardware_is_not():
    hw = sample_export().hardware
    assert hardware_kind(hw) == hardware_kind(hw.model_copy(update={"ram_available_bytes": 1}))  # free RAM varies
    assert hardware_kind(hw) != hardware_kind(hw.model_copy(update={"isa_flags": ["AVX2", "AVX512F"]}))


def test_each_kind_is_advised_and_shown_on_its_own_results():
    export = two_kind_export()
    assert all(k.recommendation is not None and k.recommendation.method == "bnb-nf4" for k in export.kinds)
    parts = per_kind(export)
    assert [len(p.results) for _, p in parts] == [1, 1] and parts[1][1].results[0].decode_tok_s == 200.0
    report = markdown(export)
    assert report.count("## Measured results") == 2 and "# On Fast CPU" in report


def test_advise_from_a_cluster_export_advises_each_kind(tmp_path):
    save_export(two_kind_export(), tmp_path / "cluster.json")
    proc = run_cli("advise", "--from", str(tmp_path / "cluster.json"), "--profile", "latency-first")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Recommendation:") == 2 and "On Fast CPU" in proc.stdout


def test_compare_reads_the_two_kinds_of_one_export(tmp_path):
    save_export(two_kind_export(), tmp_path / "cluster.json")
    proc = run_cli("compare", str(tmp_path / "cluster.json"))
    assert proc.returncode == 0, proc.stderr
    assert "2.50×" in proc.stdout and "Fast CPU" in proc.stdout  # 200 ÷ 80 tok/s, B is the second kind
    save_export(sample_export(), tmp_path / "one.json")
    proc = run_cli("compare", str(tmp_path / "one.json"))
    assert proc.returncode == 2 and "one kind of hardware" in proc.stderr


def _planned_per_kind():
    """Two kinds, each with its own plan for Qwen2.5-7B (an A100-80GB and an A100-40GB target), advised."""
    from qadvisor.core.plan import planner
    from qadvisor.core import architectures

    export = two_kind_export()
    arch = architectures.resolve_architecture("Qwen2.5-7B")
    for kind, gpu in zip(export.kinds, ("A100-80GB", "A100-40GB")):
        kind.plan = planner.plan(arch, planner.parse_target(gpu))
    return readvise(export, load_profile("balanced"), with_target=True)


def test_each_kind_gets_the_target_advice_of_its_own_plan():
    export = _planned_per_kind()
    plans = [k.plan for k in export.kinds]
    assert [k.target.target for k in export.kinds] == ["A100-80GB", "A100-40GB"]
    assert export.target == export.kinds[0].target and export.plan is None
    (_, first), (_, second) = per_kind(export)
    assert first.plan == plans[0] and second.target == export.kinds[1].target  # what each kind's part shows
    assert "A100-40GB" in markdown(export) and "A100-80GB" in markdown(export)


def test_advise_from_a_cluster_run_prints_each_kinds_target(tmp_path):
    save_export(_planned_per_kind(), tmp_path / "run.json")
    proc = run_cli("advise", "--from", str(tmp_path / "run.json"))
    assert proc.returncode == 0, proc.stderr
    assert "For Qwen2.5-7B on A100-80GB" in proc.stdout and "For Qwen2.5-7B on A100-40GB" in proc.stdout

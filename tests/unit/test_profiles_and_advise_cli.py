"""Presets, overrides, bad profiles, and the advise / compare / schema commands on recorded exports."""

import json

import pytest

from qadvisor.errors import UserError
from qadvisor.schemas.export import load_export, save_export
from qadvisor.schemas.limits import parse_size
from qadvisor.schemas.priorities import load_profile, parse_weights, preset_names
from tests.conftest import run_cli
from tests.samples import sample_export
from tests.samples import RECORDED


def test_presets_exist_and_validate():
    assert {"storage-first", "latency-first", "accuracy-first", "balanced"} <= set(preset_names())
    for name in preset_names():
        assert load_profile(name).name == name


@pytest.mark.parametrize("content, message", [
    ("{", "not a readable JSON profile"),
    ('{"schema_version": 7}', "schema_version 7"),
    ('{"schema_version": 1, "storage": -1}', "storage"),
    ('{"schema_version": 1, "storage": 0, "latency": 0, "accuracy": 0}', "at least one"),
    ('{"schema_version": 2}', "written by a newer qadvisor"),
    ('{"schema_version": 1, "max_size": "5MiB"}', "unknown field 'max_size'.*did you mean 'limits.max_size_bytes'"),
    ('{"schema_version": 1, "weights": {"storage": 3}}', "unknown field 'weights'"),
    ('{"schema_version": 1, "limits": {"max_ppl_rise": 3}}', "unknown field 'limits.max_ppl_rise'"),
    ('{"schema_version": 1, "limits": {"max_size_bytes": "big"}}', "max_size_bytes.*not a size"),
])
def test_bad_profiles(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_profile(str(path))


def test_a_profile_writes_its_size_limit_as_the_command_line_does(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"schema_version": 1, "limits": {"max_size_bytes": "5MiB"}}')
    assert load_profile(str(path)).limits.max_size_bytes == 5 * 2**20


def test_a_profile_with_an_unknown_field_stops_the_run_before_measuring(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"schema_version": 1, "max_size": "5MiB"}')
    done = run_cli("--auto", "--profile", str(path), "--export", str(tmp_path / "run.json"))
    assert done.returncode == 2 and "unknown field 'max_size'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "run.json").exists()


def test_unknown_profile():
    with pytest.raises(UserError, match="unknown profile"):
        load_profile("speed-demon")


def test_parse_size_and_weights():
    assert parse_size("1.5GiB") == int(1.5 * 2**30) and parse_size("500MB") == 500_000_000 and parse_size("42") == 42
    with pytest.raises(UserError):
        parse_size("big")
    assert parse_weights("storage=3, latency=1,accuracy=2") == {"storage": 3, "latency": 1, "accuracy": 2}
    with pytest.raises(UserError, match="not a number"):
        parse_weights("storage=x")
    with pytest.raises(UserError, match="storage=N"):
        parse_weights("speed=3")


@pytest.fixture
def recorded_run(tmp_path):
    export = sample_export()
    export.results = list(RECORDED)
    path = tmp_path / "run.json"
    save_export(export, path)
    return path


def test_advise_from_saved_run_with_each_preset(recorded_run, tmp_path):
    answers = {}
    for profile in ("storage-first", "latency-first", "balanced"):
        out = tmp_path / f"{profile}.json"
        proc = run_cli("advise", "--from", str(recorded_run), "--profile", profile, "--export", str(out))
        assert proc.returncode == 0, proc.stderr
        rec = load_export(out).recommendation
        answers[profile] = rec.archetype
        assert f"Tool {rec.archetype} — {rec.method}" in proc.stdout
    assert answers == {"storage-first": "A", "latency-first": "B", "balanced": "C"}


def test_advise_reproduces_and_overrides(recorded_run, tmp_path):
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    run_cli("advise", "--from", str(recorded_run), "--profile", "balanced", "--export", str(first))
    run_cli("advise", "--from", str(first), "--export", str(second))
    assert load_export(first).recommendation == load_export(second).recommendation
    proc = run_cli("advise", "--from", str(recorded_run), "--max-size", "9MB", "--max-ppl-rise", "1")
    assert proc.returncode == 0 and "no recommendation" in proc.stdout and "closest" in proc.stdout


def test_report_is_markdown_with_the_recommendation(recorded_run, tmp_path):
    report = tmp_path / "r.md"
    proc = run_cli("advise", "--from", str(recorded_run), "--profile", "balanced", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    text = report.read_text()
    assert text.startswith("# Quantization advice") and "## Recommendation" in text and "| int8 |" in text


def test_compare_two_runs(recorded_run, tmp_path):
    other = load_export(recorded_run)
    other.settings.device = "cuda: Test GPU"
    other.results = [r.model_copy(update={"decode_tok_s": r.decode_tok_s * (10 if r.method == "int4-slow" else 1),
                                          "device": "cuda: Test GPU"}) for r in other.results]
    second = tmp_path / "gpu.json"
    save_export(other, second)
    proc = run_cli("compare", str(recorded_run), str(second))
    assert proc.returncode == 0, proc.stderr
    assert "int4-slow" in proc.stdout and "10.00×" in proc.stdout and "cuda: Test GPU" in proc.stdout
    assert "same hardware" not in proc.stdout  # another device: the differences are the hardware's


def test_advise_bad_export_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 0}))
    proc = run_cli("advise", "--from", str(bad))
    assert proc.returncode == 2 and "schema_version 0" in proc.stderr and "Traceback" not in proc.stderr


def test_schema_command():
    proc = run_cli("schema")
    schema = json.loads(proc.stdout)
    assert "results" in schema["properties"] and "recommendation" in schema["properties"]


def test_advise_keeps_the_runs_own_weights_and_limits(recorded_run, tmp_path):
    custom, again = tmp_path / "custom.json", tmp_path / "again.json"
    proc = run_cli("advise", "--from", str(recorded_run), "--priorities", "storage=7,latency=1,accuracy=1",
                   "--max-ppl-rise", "3", "--export", str(custom))
    assert proc.returncode == 0, proc.stderr
    run_cli("advise", "--from", str(custom), "--export", str(again))
    kept = load_export(again).priorities
    assert (kept.storage, kept.latency, kept.accuracy) == (7, 1, 1) and kept.limits.max_ppl_rise_pct == 3
    assert load_export(again).recommendation == load_export(custom).recommendation
    run_cli("advise", "--from", str(custom), "--priorities", "latency=9", "--export", str(again))
    assert load_export(again).priorities.latency == 9 and load_export(again).priorities.storage == 7

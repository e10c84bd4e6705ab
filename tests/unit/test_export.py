import json

import pytest

from qadvisor.errors import UserError
from qadvisor.schemas.export import SCHEMA_VERSION, load_export, save_export
from qadvisor.schemas.jsonfile import write_text_atomic
from tests.samples import sample_export


def test_round_trip(tmp_path):
    path = tmp_path / "run.json"
    save_export(sample_export(), path)
    loaded = load_export(path)
    assert loaded == sample_export()
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_result_field_names_are_the_contract(tmp_path):
    path = tmp_path / "run.json"
    save_export(sample_export(), path)
    result = json.loads(path.read_text())["results"][0]
    for name in ("method", "backend", "bits", "status", "reason", "size_bytes", "compression_ratio",
                 "size_reduction_pct", "prefill_tok_s", "decode_tok_s", "decode_tok_s_spread", "ttft_ms",
                 "peak_rss_bytes", "ppl", "ppl_delta_pct", "kl_mean", "top1_agreement"):
        assert name in result


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a readable JSON export"),
        ("[1, 2]", "expected a JSON object"),
        ('{"schema_version": 99}', "written by a newer qadvisor"),
        ('{"schema_version": "x"}', "schema_version 'x' is not supported"),
        ('{"schema_version": 1, "results": "x"}', "field"),
    ],
)
def test_bad_exports_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_export(path)


def test_missing_export(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_export(tmp_path / "nope.json")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "keep.json"
    path.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_a_stopped_run_says_what_it_cut(tmp_path):
    from qadvisor.app.report import markdown
    from qadvisor.app.views import not_measured

    export = sample_export()
    assert export.complete and export.cut == []  # exports written before these fields load as complete
    export = export.model_copy(update={"complete": False, "cut": ["gptq-int4", "hqq-int4"]})
    save_export(export, tmp_path / "part.json")
    loaded = load_export(tmp_path / "part.json")
    assert not loaded.complete and loaded.cut == ["gptq-int4", "hqq-int4"]
    assert "hqq-int4: not started (incomplete run, stopped by the user)" in not_measured(loaded)  # gptq-int4 failed
    assert "incomplete run" in markdown(loaded)


def test_a_version_1_export_loads_as_the_current_version(tmp_path):
    """Version 1 had one archetype label per method and no `fits`: load_export migrates it in one place, so the views
    need no fallback of their own."""
    from qadvisor.app.advice import readvise
    from qadvisor.app.views import recommendation_view
    from qadvisor.schemas.priorities import load_profile
    from tests.samples import RECORDED, sample_export

    export = sample_export()
    export.results = list(RECORDED)
    data = json.loads(readvise(export, load_profile("balanced")).model_dump_json())
    data["schema_version"] = 1
    labels = data["recommendation"]["archetypes"]
    del data["recommendation"]["fits"]
    for r in data["results"]:
        for field in ("accuracy_basis", "safe_config", "cpu_contention"):
            r.pop(field, None)
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    loaded = load_export(path)
    assert loaded.schema_version == SCHEMA_VERSION == 3
    assert loaded.recommendation.fits == {m: [a] for m, a in labels.items()}
    assert all(r.accuracy_basis == "measured" for r in loaded.results)
    assert any(line.startswith("archetypes here: ") for line in recommendation_view(loaded).lines)


def test_a_version_2_plan_loads_with_a_size_class_and_a_device_type(tmp_path):
    """Version 2 named a plan row's size band an archetype (A / B / C) and its target's cpu / gpu a kind; version 3
    keeps archetypes for the advisor: load_export renames both, the bands by their meaning."""
    from qadvisor.core import architectures
    from qadvisor.core.plan import planner

    export = sample_export()
    arch = architectures.resolve_architecture("Qwen2.5-7B")
    export.plan = planner.plan(arch, planner.parse_target("A100-80GB"), methods=["bf16", "gguf-q8_0", "gguf-q2_k"])
    data = json.loads(export.model_dump_json())
    data["schema_version"] = 2
    data["plan"]["target"]["kind"] = data["plan"]["target"].pop("device_type")
    old = {"high": "A", "medium": "C", "low": "B", "base": "base"}
    for row in data["plan"]["plans"]:
        row["archetype"] = old[row.pop("size_class")]
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(data))
    loaded = load_export(path)
    assert loaded.plan == export.plan and loaded.schema_version == 3
    assert [r.size_class for r in loaded.plan.plans] == ["base", "low", "high"]

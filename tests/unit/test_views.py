"""The shared views every face renders: where the time went."""

import pytest

from qadvisor.app.report import markdown
from qadvisor.app.views import time_view
from tests.samples import sample_export


def test_where_the_time_went_per_method_and_step():
    export = sample_export()
    first, second = export.results[0], export.results[1]
    export.results[0] = first.model_copy(update={"step_s": {"quantize": 2.0, "benchmark": 1.5}, "start_s": 0.5,
                                                 "total_s": 4.0, "quantize_s": 2.0})
    export.results[1] = first.model_copy(update={"method": "bnb-int8", "step_s": {"reload": 0.3}, "cached": True,
                                                 "quantize_s": 7.9, "start_s": 0.02, "total_s": 1.0})
    second = export.results[1]
    view = time_view(export)
    rows = {row[0]: row for row in view.rows}
    assert rows[first.method][3] == "2.0" and rows[first.method][-1] == "4.5"
    assert rows[second.method][3] == "cached (7.9)"
    assert "1 of 2 quantized models from the cache" in view.notes[-1]
    text = markdown(export)
    assert "## Where the time went" in text and "cached (7.9)" in text


def test_a_first_forward_pass_that_compiles_is_named_apart_from_scoring():
    export = sample_export()
    timed = {"step_s": {"evaluate": 5.9}, "start_s": 0.1, "total_s": 9.7}
    export.results = [export.results[0].model_copy(update={**timed, "method": "gptq-int2", "first_call_s": 4.2}),
                      export.results[0].model_copy(update={**timed, "method": "fp32", "first_call_s": 0.1})]
    line = time_view(export).notes[-1]
    assert line.startswith("evaluate includes what the first forward pass took") and line.endswith(": gptq-int2 4.2 s")
    export.results = export.results[1:]
    assert not time_view(export).notes[-1].startswith("evaluate includes")


def test_a_clusters_trial_seconds_add_up_per_node_not_across_nodes_measuring_at_once():
    export = sample_export()
    first = export.results[0].model_copy(update={"step_s": {"benchmark": 1.0}, "start_s": 0.0, "total_s": 10.0})
    export.results = [first.model_copy(update={"node": node, "method": f"{m} @ {node}"})
                      for node in ("a", "b") for m in ("x", "y")]
    assert "trials per node, the nodes at the same time: a 20 s, b 20 s," in time_view(export).notes[-1]
    export.results = [r.model_copy(update={"node": None}) for r in export.results]
    assert "trials 40 s in all," in time_view(export).notes[-1]


def test_the_slices_time_is_shown_per_method_after_the_trials():
    from tests.unit.test_target import _export_with_plan

    export = _export_with_plan()
    export.results = [r.model_copy(update={"step_s": {"benchmark": 1.0}, "total_s": 2.0}) for r in export.results]
    assert not any(n.startswith("slices of") for n in time_view(export).notes)  # not measured: no line
    export.plan = export.plan.model_copy(update={"measure_s": {"slices": 61.6, "gguf-q8_0": 95.2, "gguf-q4_k_m": 140.0}})
    assert time_view(export).notes[-1] == (
        "slices of Qwen2.5-72B (each method: quantize and save both depths, then time them side by side), seconds: "
        "building them 62, gguf-q8_0 95, gguf-q4_k_m 140; 297 s in all")


def test_exports_without_step_times_show_no_time_table():
    assert "Where the time went" not in markdown(sample_export())


def test_an_unquantized_baseline_is_shown_apart_from_the_balanced_archetype():
    from qadvisor.app.advice import readvise
    from qadvisor.app.views import recommendation_view, results_view
    from qadvisor.schemas.priorities import load_profile
    from tests.samples import result

    export = sample_export()
    export.results = [result("fp32", 60, 200.0, 0.0, 0.0), result("nf4", 13, 250.0, 0.0015, 0.1),
                      result("q4", 12, 1500.0, 0.0002, 0.0)]
    export = readvise(export, load_profile("balanced"))
    types = {row[0]: row[-1] for row in results_view(export).rows}
    assert types == {"fp32": "base", "nf4": "A", "q4": "A/B"}  # the table's type and the archetype line agree
    line = next(line for line in recommendation_view(export).lines if line.startswith("archetypes here"))
    assert line == "archetypes here: A: nf4, q4; B: q4; C: —; baseline (not quantized): fp32"


def test_the_advice_of_a_stopped_run_says_what_it_leaves_out():
    from qadvisor.app.advice import readvise
    from qadvisor.app.views import recommendation_view
    from qadvisor.schemas.priorities import load_profile

    export = readvise(sample_export(), load_profile("balanced"))
    assert not any("stopped" in line for line in recommendation_view(export).lines)
    export.complete, export.cut = False, ["gguf-q8_0", "gguf-q2_k"]
    first = recommendation_view(export).lines[0]
    assert first == "the run was stopped: advised on what finished, without gguf-q8_0, gguf-q2_k"


def test_comparing_two_runs_of_one_machine_names_the_spread_between_runs():
    from qadvisor.app.views import comparison_view
    from qadvisor.core.advise.compare import compare
    from tests.samples import RECORDED

    first, second = sample_export(), sample_export()
    first.results = list(RECORDED)
    second.results = [r.model_copy(update={"decode_tok_s": r.decode_tok_s * k})
                      for r, k in zip(RECORDED, (0.8, 1.0, 1.0, 1.1, 1.0, 1.0))]
    note = comparison_view(compare(first, second), "a", "b").notes[-1]
    assert note.startswith("the same hardware, model and lengths in both runs: B/A decode from 0.80× to 1.10× "
                           "(median 1.00×)")
    for other in (second.model_copy(update={"hardware": second.hardware.model_copy(update={"cpu_model": "Other"})}),
                  second.model_copy(update={"model": second.model.model_copy(update={"name": "another model"})}),
                  second.model_copy(update={"settings": second.settings.model_copy(update={"decode_tokens": 64})})):
        assert not any("same hardware" in n for n in comparison_view(compare(first, other), "a", "b").notes)


def test_a_progress_line_on_a_piped_stderr_is_never_cut_in_two(capsys):
    from qadvisor.console import EventPrinter
    from qadvisor.schemas.events import Progress

    message = "prompt 128, 32 new tokens, warm-up + at least 3 repeats (1 s of timing), " * 2
    EventPrinter(12)(Progress(method="gptq-int4", step="benchmark", message=message))
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"  [1/12] gptq-int4: benchmark {message}".rstrip()]


def test_the_footnote_names_the_methods_whose_timed_runs_decoded_fewer_tokens():
    from qadvisor.app.views import results_view
    from tests.samples import result

    export = sample_export()
    export.results = [result("fp32", 60, 200.0, 0.0, 0.0), result("slow", 13, 20.0, 0.0015, 0.1)]
    assert "fewer in each timed run" not in results_view(export).notes[0]
    export.results[1] = export.results[1].model_copy(update={"decode_tokens": 9})
    assert "32 new (fewer in each timed run where 32 would overrun the measuring time: slow 9)" in results_view(export).notes[0]


def test_the_doctor_table_says_each_verdict_and_warns_of_a_busy_cpu():
    from qadvisor.app.views import doctor_view
    from qadvisor.schemas.doctor import DoctorReport, DoctorRow

    rows = [DoctorRow(backend="torch", method="fp32", verdict="works", detail="decodes 150.0 tok/s", seconds=2.0),
            DoctorRow(backend="hqq", method="hqq-int4", verdict="fails", detail="crashed (SIGSEGV); log: /x.log")]
    report = DoctorReport(created_at="2026-12-06T02:00:00+00:00", cpu="cpu", isa_flags=["AVX2"], threads=2,
                          cpu_contention=0.4, rows=rows, total_s=30.0)
    view = doctor_view(report)
    assert view.columns == ["backend", "method", "verdict", "what it found", "s"]
    assert [r[2] for r in view.rows] == ["works", "fails"] and "log: /x.log" in view.rows[1][3]
    assert "took 40 % of the CPU" in view.above[0] and "would be low" in view.above[0]
    quiet = doctor_view(report.model_copy(update={"cpu_contention": 0.01}))
    assert "would be low" not in quiet.above[0]


def _runs():
    """Recorded runs of three shapes: spread out (RECORDED), llama.cpp's (the smallest also the fastest), and two
    4-bit methods whose decode speeds differ by less than their noise (the pick that flipped between runs)."""
    from tests.samples import RECORDED, result

    llama = [result("fp32", 60, 200.0, 0.0, 0.0), result("q8", 16, 2000.0, 0.0001, 0.0),
             result("q4", 12, 2050.0, 0.0002, 0.1), result("q2", 9, 2300.0, 0.002, 0.4)]
    close = [result("fp32", 60, 120.0, 0.0, 0.0), result("int8", 18, 110.0, 1e-5, 0.0),
             result("gptq4", 12.4, 219.9, 3e-4, -0.2), result("quanto4", 12.4, 218.9, 1.5e-3, 0.3),
             result("int2", 9.4, 50.0, 8e-3, -0.5)]
    for r in close:
        r.decode_cv = 0.04  # the run's own noise: 4 % between repeats
    return {"recorded": list(RECORDED), "llama": llama, "close": close}


@pytest.mark.parametrize("preset", ["balanced", "storage-first", "latency-first", "accuracy-first"])
@pytest.mark.parametrize("run", ["recorded", "llama", "close"])
def test_every_line_of_the_advice_tells_the_same_story(preset, run):
    """The headline, the team line, the runner-up, the table's type column and the archetype list all come from one
    classification: no two of them disagree, for every preset on every recorded run."""
    import re

    from qadvisor.app.advice import readvise
    from qadvisor.app.views import recommendation_view, results_view
    from qadvisor.schemas.recommendation import label_of
    from qadvisor.schemas.priorities import load_profile

    export = sample_export()
    export.results = _runs()[run]
    export = readvise(export, load_profile(preset))
    rec = export.recommendation
    fits = {m: set(k) for m, k in rec.fits.items()}
    assert rec.method not in rec.baselines and rec.archetype in fits[rec.method]
    types = {row[0]: row[-1] for row in results_view(export).rows}
    for method, kinds in fits.items():
        assert types[method] == ("base" if method in rec.baselines else label_of(kinds))
        if method in rec.baselines:
            assert kinds == {"C"}
    lines = recommendation_view(export).lines
    groups = dict(part.split(": ", 1) for part in next(line for line in lines if line.startswith("archetypes here: "))
                  .removeprefix("archetypes here: ").split("; ") if not part.startswith("baseline"))
    for kind, names in groups.items():
        assert {n for n in names.split(", ") if n != "—"} == {m for m, k in fits.items()
                                                             if kind in k and m not in rec.baselines}
    if "no method measured here is Tool" in lines[0]:
        assert groups[rec.team] == "—"
    runner = next((line for line in lines if line.startswith("runner-up ")), None)
    if runner:
        name, kind = re.match(r"runner-up (\S+) \(Tool ([A-C/]+)\)", runner).groups()
        assert kind == label_of(fits[name]) and name not in rec.baselines


def test_a_pick_within_the_noise_is_not_taken_away_by_its_label():
    """gptq4 decodes 0.5 % faster than quanto4, inside their 4 % noise: neither is surely "the fastest", so both are B
    and C, and a balanced team keeps the best-scoring of them instead of losing it to a label."""
    from qadvisor.app.advice import readvise
    from qadvisor.schemas.priorities import load_profile

    export = sample_export()
    export.results = _runs()["close"]
    rec = readvise(export, load_profile("balanced")).recommendation
    assert set(rec.fits["gptq4"]) == {"B", "C"} and set(rec.fits["quanto4"]) == {"B", "C"}
    assert rec.method == "gptq4" and rec.archetype == "C"


def test_the_score_column_says_ruled_out_only_for_a_method_the_limits_rule_out():
    from qadvisor.app.advice import readvise
    from qadvisor.app.views import score_view
    from qadvisor.schemas.priorities import load_profile
    from tests.samples import result

    export = sample_export()
    export.results = [result("fp32", 60, 200.0, 0.0, 0.0)]  # a run stopped after fp32: nothing to score it against
    rows = {row[0]: row[2] for row in score_view(readvise(export, load_profile("balanced"))).rows}
    assert rows == {"fp32": "—"}
    export.results.append(result("q2", 9, 100.0, 0.5, 40.0))  # +40 % perplexity: balanced allows +10 %
    rows = {row[0]: row[2] for row in score_view(readvise(export, load_profile("balanced"))).rows}
    assert rows == {"fp32": "—", "q2": "ruled out"}


def test_every_event_says_its_stage_so_no_face_parses_a_method_name():
    """The stage, node and depth are fields: the TUI routes by them (a slice's event named like a trial's, a
    node's reference, a streamed layer)."""
    from qadvisor.schemas.events import EventEnvelope, Progress, Result
    from qadvisor.schemas.result import TrialResult

    event = Progress(method="gguf-q8_0 @2L", step="quantize", stage="slice", depth=2)
    again = EventEnvelope.model_validate_json(EventEnvelope(event=event).model_dump_json()).event
    assert (again.stage, again.depth, again.node) == ("slice", 2, None)
    assert Progress(method="fp32", step="load").stage == "trial"  # what a trial's own process sends
    result = Result(result=TrialResult(method="fp32", backend="torch", bits=32, status="ok"), node="n1")
    assert result.node == "n1" and result.stage == "trial"


def test_a_slices_trial_events_are_the_slices_with_their_depth():
    from qadvisor.core.plan.slices import _relabelled
    from qadvisor.schemas.events import Progress, Result
    from qadvisor.schemas.result import TrialResult

    def trial():
        yield Progress(method="reference", step="evaluate", stage="reference")
        yield Progress(method="gguf-q8_0", step="quantize")
        yield Result(result=TrialResult(method="gguf-q8_0", backend="llamacpp", bits=8, status="ok", size_bytes=2**20))
        return "done"

    events = []
    relabelled = _relabelled(trial(), "gguf-q8_0 @2L", 2)
    while True:
        try:
            events.append(next(relabelled))
        except StopIteration as stop:
            assert stop.value == "done"
            break
    assert [(e.stage, e.depth, e.method) for e in events] == [("slice", 2, "gguf-q8_0 @2L")] * 3


def test_doctor_quantizes_afresh_and_calibrates(monkeypatch):
    """Never a cached file, and GPTQ's and AWQ's solvers on a small calibration (the run itself is measured in
    tests/integration/test_isa_paths.py)."""
    from qadvisor.app import doctor

    seen = {}

    class Stop(Exception):
        pass

    def fake_run(request, hardware):
        seen["request"] = request
        raise Stop

    monkeypatch.setattr(doctor, "Run", fake_run)
    monkeypatch.setattr(doctor, "cpu_busy_now", lambda seconds: 0.0)
    from qadvisor.core.hardware import detect

    try:
        doctor.run_doctor(detect(with_backends=False), 1, only=["gptq", "awq"])
    except Stop:
        pass
    request = seen["request"]
    assert request.reuse_cache is False and request.settings.score_accuracy  # calibrated, not rounded to nearest
    assert request.methods == ["gptq-int4", "awq-int4"] or set(request.methods) <= {"gptq-int4", "awq-int4"}
    assert len(request.calib_text.read_text().split("\n\n")) == doctor.CALIBRATION_PARAGRAPHS

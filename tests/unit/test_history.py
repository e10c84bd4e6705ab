"""A decode beside this machine's earlier runs of the same model: the spread between processes that the busy-machine
checks cannot see (three identical runs here put torchao-int8 at 62, 108 and 56 tok/s with the machine at its pace)."""

from qadvisor.app.views import contention_lines, results_view
from qadvisor.core.advise.advisor import decode_noise
from qadvisor.core.contention import drifted
from qadvisor.core.measure import history
from qadvisor.schemas.result import TrialResult


def _result(decode: float, earlier: list[float] = (), method: str = "torchao-int8") -> TrialResult:
    return TrialResult(method=method, backend="torchao", bits=8, status="ok", size_bytes=10, decode_tok_s=decode,
                       decode_tok_s_spread=1.0, decode_cv=0.01, decode_earlier=list(earlier))


def test_earlier_figures_are_recalled_newest_last_and_a_few_kept(tmp_path):
    assert history.recall_and_add(tmp_path, "k", 62.1) == []
    assert history.recall_and_add(tmp_path, "k", 108.4) == [62.1]
    assert history.recall_and_add(tmp_path, "other", 5.0) == []
    for figure in range(10):
        history.recall_and_add(tmp_path, "k", float(figure))
    assert history.recall_and_add(tmp_path, "k", 1.0) == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_a_figure_timed_on_a_busy_machine_is_compared_but_never_kept(tmp_path):
    assert history.recall_and_add(tmp_path, "k", 60.0) == []
    assert history.recall_and_add(tmp_path, "k", 6.0, keep=False) == [60.0]
    assert history.recall_and_add(tmp_path, "k", 58.0) == [60.0]


def test_an_unreadable_history_starts_again(tmp_path):
    (tmp_path / "history").mkdir()
    (tmp_path / history.HISTORY_FILE).write_text("{not json")
    assert history.recall_and_add(tmp_path, "k", 3.0) == []
    assert history.recall_and_add(tmp_path, "k", 4.0) == [3.0]


def test_a_decode_far_from_its_earlier_runs_is_marked_and_widens_the_noise():
    moved, steady, first = _result(108.4, [62.1, 56.4]), _result(60.0, [62.1, 56.4]), _result(108.4)
    assert drifted(moved) and not drifted(steady) and not drifted(first)
    assert decode_noise(moved) > decode_noise(_result(108.4, [108.0, 107.0]))
    lines = contention_lines([moved, steady, first])
    assert len(lines) == 1 and lines[0].startswith("≈ decode more than 15 %")
    assert "torchao-int8 108.4 tok/s (+75 %; earlier here: 62.1, 56.4)" in lines[0]


def test_the_results_table_marks_the_moved_decode(tmp_path):
    from qadvisor.schemas.export import RunExport
    from tests.samples import sample_export

    export: RunExport = sample_export()
    first = export.results[0]
    moved = first.model_copy(update={"decode_earlier": [first.decode_tok_s * 2, first.decode_tok_s * 2.1]})
    view = results_view(export.model_copy(update={"results": [moved, *export.results[1:]]}))
    assert view.rows[0][4].endswith(" ≈") and not any(row[4].endswith(" ≈") for row in view.rows[1:])


def test_a_run_keeps_each_measured_decode_for_the_next(tmp_path, monkeypatch):
    from qadvisor.core.hardware import detect
    from qadvisor.core.measure.runner import Run, RunRequest

    run = Run(RunRequest(methods=["fp32"], cache_dir=tmp_path), detect(with_backends=False))
    assert run._with_history(_result(50.0, method="fp32")).decode_earlier == []
    again = Run(RunRequest(methods=["fp32"], cache_dir=tmp_path), detect(with_backends=False))
    assert again._with_history(_result(70.0, method="fp32")).decode_earlier == [50.0]
    projected = _result(9.0, method="fp32").model_copy(update={"decode_kind": "projected"})
    assert again._with_history(projected).decode_earlier == []  # only what a trial timed here
    busy = _result(5.0, method="fp32").model_copy(update={"cpu_contention": 0.9})
    assert again._with_history(busy).decode_earlier == [50.0, 70.0]
    assert again._with_history(_result(60.0, method="fp32")).decode_earlier == [50.0, 70.0]  # the busy one not kept

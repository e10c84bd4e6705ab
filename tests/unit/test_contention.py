"""CPU contention: measured per timed window, a busy window timed again once, and the figure marked where the CPU
stayed busy — in the table, the notes every face shows, and the advice's noise (core.contention)."""

import pytest

from qadvisor.app.views import contention_lines
from qadvisor.core.contention import contended
from qadvisor.core import contention
from qadvisor.core.measure import metrics
from qadvisor.core.advise.advisor import advise, decode_noise
from qadvisor.schemas.priorities import Priorities
from qadvisor.schemas.result import TrialResult


class Clock:
    """Stands for the kernel: PSI's 'some' microseconds, /proc/stat's jiffies and the wall clock move as told."""

    def __init__(self, tmp_path, monkeypatch, psi: bool = True):
        self.psi_file, self.stat_file = tmp_path / "cpu", tmp_path / "stat"
        self.now, self.some_us, self.steal, self.ticks = 100.0, 0, 0, 0
        monkeypatch.setattr(contention, "PSI_FILE", self.psi_file if psi else tmp_path / "absent")
        monkeypatch.setattr(contention, "STAT_FILE", self.stat_file)
        monkeypatch.setattr(contention.time, "monotonic", lambda: self.now)
        self.write()

    def write(self):
        self.psi_file.write_text(f"some avg10=0.00 avg60=0.00 avg300=0.00 total={self.some_us}\n"
                                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        self.stat_file.write_text(f"cpu  {self.ticks} 0 0 0 0 0 0 {self.steal} 0 0\n")

    def advance(self, seconds: float, waited_s: float, stolen_share: float = 0.0):
        self.now += seconds
        self.some_us += int(waited_s * 1e6)
        self.steal += int(100 * seconds * stolen_share)
        self.ticks += int(100 * seconds * (1 - stolen_share))
        self.write()


def test_the_share_is_the_time_some_task_waited_for_a_cpu_plus_the_time_stolen(tmp_path, monkeypatch):
    clock = Clock(tmp_path, monkeypatch)
    watch = contention.CpuWatch(2)
    clock.advance(2.0, waited_s=0.0)
    assert watch.share() == 0.0
    watch = contention.CpuWatch(2)
    clock.advance(2.0, waited_s=1.0, stolen_share=0.1)
    assert watch.share() == pytest.approx(0.6, abs=0.01)
    watch = contention.CpuWatch(2)
    clock.advance(1.0, waited_s=5.0)  # several tasks waiting at once: capped at the whole window
    assert watch.share() == 1.0


def test_without_psi_the_threads_own_cpu_time_stands_in(tmp_path, monkeypatch):
    clock = Clock(tmp_path, monkeypatch, psi=False)
    used = iter([10.0, 12.0])
    monkeypatch.setattr(contention, "_own_cpu_s", lambda: next(used))
    watch = contention.CpuWatch(2)
    clock.advance(2.0, waited_s=0.0)
    assert watch.share() == pytest.approx(0.5)  # 2 CPU-seconds of the 4 that two threads had


@pytest.mark.parametrize("shares, kept", [([0.02], 0.02), ([0.5, 0.03], 0.03), ([0.3, 0.6], 0.3)])
def test_a_busy_window_is_timed_again_once_and_the_quieter_kept(monkeypatch, shares, kept):
    monkeypatch.setattr(metrics.time, "sleep", lambda s: None)
    calls = iter(shares)
    runs, busy, _ = metrics._quieter(lambda: (["runs"], next(calls), None))
    assert busy == kept and len(list(calls)) == 0  # no third timing, whatever the second found


@pytest.mark.parametrize("paces, kept", [([1.05], 1.05), ([1.6, 1.1], 1.1), ([1.3, 1.5], 1.3)])
def test_a_timing_while_the_machine_ran_slow_is_timed_again_with_the_counters_at_zero(monkeypatch, paces, kept):
    """The counters said nothing (0 % others), the fixed workload said the machine ran slow: timed again once."""
    monkeypatch.setattr(metrics.time, "sleep", lambda s: None)
    calls = iter(paces)
    _, busy, ratio = metrics._quieter(lambda: (["runs"], 0.0, next(calls)))
    assert ratio == kept and busy == 0.0 and len(list(calls)) == 0


def _result(method, decode, busy=None, size=10, kl=1e-3, pace=None):
    return TrialResult(method=method, backend="x", bits=4, status="ok", decode_tok_s=decode, decode_cv=0.01,
                       size_bytes=size * 2**20, compression_ratio=3.0, size_reduction_pct=66.0, kl_mean=kl,
                       ppl_delta_pct=0.1, top1_agreement=0.99, cpu_contention=busy, pace_ratio=pace)


def test_a_contended_figure_is_marked_and_named_once():
    results = [_result("a", 100, 0.02), _result("b", 50, 0.45), _result("c", 60, None)]
    assert [contended(r) for r in results] == [False, True, False]
    [line] = contention_lines(results)
    assert "b (45 %)" in line and "a (" not in line and line.startswith("⚠")
    assert contention_lines(results[:1]) == []


def test_a_figure_timed_while_the_machine_ran_slow_is_marked_only_from_what_the_workload_measured():
    from qadvisor.core.contention import marked

    results = [_result("quiet", 100, 0.0, pace=1.05), _result("slow", 50, 0.0, pace=1.4), _result("old", 60)]
    assert [marked(r) for r in results] == [False, True, False]  # no workload figure: no mark
    [line] = contention_lines(results)
    assert "slow (1.40× slower)" in line and "quiet" not in line and "ran slow" in line
    assert decode_noise(results[1]) == pytest.approx(2 * 0.01 * 50 + 50 * 0.4)
    rec = advise([_result("q", 100, 0.0, pace=1.0), _result("s", 95, 0.0, pace=1.5)],
                 Priorities(storage=0, latency=0.5, accuracy=1))
    assert any("while the machine ran slow: s (1.50× slower)" in r for r in rec.reasons)


def test_the_pace_check_compares_the_workload_with_the_runs_start(monkeypatch):
    from qadvisor.core import pace
    from qadvisor.core.measure.jobs import EvalSettings

    times = iter([0.012, 0.015])
    monkeypatch.setattr(pace, "workload_s", lambda threads=1: next(times))
    assert pace.PaceCheck(0.010, 2).ratio() == pytest.approx(1.5)  # the slower of before and after
    assert pace.PaceCheck(None, 2).ratio() is None  # no baseline: nothing to compare with, nothing marked
    monkeypatch.setattr(pace, "workload_s", lambda threads=1: 0.02)
    assert pace.with_baseline(EvalSettings(threads=2)).pace_baseline_s == 0.02
    assert pace.with_baseline(EvalSettings(pace_baseline_s=0.5)).pace_baseline_s == 0.5  # the caller's own start
    assert pace.with_baseline(EvalSettings(device="cuda")).pace_baseline_s is None


def test_the_advice_widens_its_noise_and_names_the_methods_timed_on_a_busy_cpu():
    quiet, busy = _result("q", 100, 0.0), _result("b", 100, 0.5)
    assert decode_noise(busy) == pytest.approx(decode_noise(quiet) + 100.0)  # 0.5 / (1 - 0.5) of its figure
    rec = advise([_result("q", 100, 0.0), _result("b", 95, 0.5)], Priorities(storage=0, latency=0.5, accuracy=1))
    assert rec.method == "q"
    assert any("timed while other processes took the CPU: b (50 %)" in r for r in rec.reasons)
    assert any("too close to call" in r and "busy CPU" in r for r in rec.reasons)


def test_compare_warns_where_one_run_timed_a_method_on_a_busy_cpu_or_a_slow_machine():
    from qadvisor.app.views import contention_differs
    from qadvisor.core.advise.compare import MethodPair

    pairs = [MethodPair("q", _result("q", 100, 0.01), _result("q", 40, 0.6)),
             MethodPair("r", _result("r", 100, 0.01), _result("r", 98, 0.02)),
             # a host that slows its guest shows no contention: the busy-machine check's mark counts the same
             MethodPair("s", _result("s", 100, 0.0, pace=1.5), _result("s", 190, 0.0))]
    line = contention_differs(pairs)
    assert line.startswith("⚠ timed on a busy CPU or a slow machine in one run only: q (B: others took 60 % of the CPU)")
    assert "s (A: 1.50× slower than at the start)" in line and "r (" not in line
    assert contention_differs(pairs[1:2]) == ""


def test_the_runs_time_view_reports_what_the_busy_machine_check_costs():
    from qadvisor.app.views import time_view
    from tests.samples import sample_export

    export = sample_export()
    export.results[0].step_s = {"quantize": 1.0, "benchmark": 2.0}
    assert not any("busy-machine check" in n for n in time_view(export).notes)  # not checked: not said
    export.settings.pace_baseline_s = 0.012
    [note] = [n for n in time_view(export).notes if "busy-machine check" in n]
    assert "took 12.0 ms at the run's start" in note and "about 0.12 s a timing" in note

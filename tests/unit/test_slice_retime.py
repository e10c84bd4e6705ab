"""A projection whose range is wider than its figure is timed once more (the saved slices, side by side again) and
the narrower kept; only what stays wide is shown as unreliable."""

import threading

import pytest

from qadvisor.core import architectures
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.plan import slices
from qadvisor.schemas.events import Progress, Result
from qadvisor.schemas.result import TrialResult

STEADY = [(10.0, 0.2), (6.0, 0.1)]  # (decode tok/s, spread) at 1 and 2 layers: a narrow projection
NOISY = [(10.0, 9.0), (6.0, 5.0)]  # the same medians, repeats all over: a range wider than the figure


def _speeds(pairs):
    return [TrialResult(method="m", backend="x", bits=4, status="ok", device="cpu", decode_tok_s=d,
                        decode_tok_s_spread=s, prefill_tok_s=100.0, prefill_tok_s_spread=1.0) for d, s in pairs]


def _measurement(monkeypatch, timings: list):
    """A SliceMeasurement of Qwen2.5-72B at depths 1 and 2 whose trials save and whose timings return `timings` in
    turn (each a list of (decode, spread) per depth)."""
    m = object.__new__(slices.SliceMeasurement)
    m.arch, m.depths, m.whole = architectures.resolve_architecture("Qwen2.5-72B"), (1, 2), None
    m.settings, m.cache_root = EvalSettings(prompt_tokens=128), None
    calls = []

    def trial(self, method, label, source, work_dir, cancel):
        yield from ()
        return _speeds([(0.0, 0.0)])[0].model_copy(update={"decode_tok_s": None, "decode_tok_s_spread": None})

    def timing(*args, **kwargs):
        calls.append(args)
        yield from ()
        return _speeds(timings[len(calls) - 1])

    monkeypatch.setattr(slices.SliceMeasurement, "_trial", trial)
    monkeypatch.setattr(slices.SliceMeasurement, "slice_dir", lambda self, layers: f"slice-{layers}")
    monkeypatch.setattr(slices, "time_side_by_side", timing)
    monkeypatch.setattr(slices.paths, "probe_dir", lambda root: None)
    return m, calls


def _run(m, tmp_path):
    events, gen = [], m._method("bnb-nf4", tmp_path, threading.Event())
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


@pytest.mark.parametrize("timings, expect_calls, kept", [
    ([STEADY], 1, STEADY),  # narrow: timed once
    ([NOISY, STEADY], 2, STEADY),  # wide, then narrow: the narrower kept
    ([NOISY, [(10.0, 9.5), (6.0, 5.5)]], 2, NOISY),  # wide twice: the narrower of the two, shown as unreliable
])
def test_a_projection_wider_than_its_figure_is_timed_again(monkeypatch, tmp_path, timings, expect_calls, kept):
    m, calls = _measurement(monkeypatch, timings)
    events, results = _run(m, tmp_path)
    assert len(calls) == expect_calls
    assert [(r.decode_tok_s, r.decode_tok_s_spread) for r in results] == kept
    again = [e for e in events if isinstance(e, Progress) and "timed side by side once more" in e.message]
    assert len(again) == expect_calls - 1
    assert [e.result.method for e in events if isinstance(e, Result)] == ["bnb-nf4 @1L", "bnb-nf4 @2L"]
    assert (m._width("bnb-nf4", results) > 1) == (kept is NOISY)

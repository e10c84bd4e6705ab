"""The runner on the bundled model: events in order, failures contained, cancel keeps finished results."""

import threading

import pytest

from qadvisor.core.hardware import detect
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.processes import WARM_START
from qadvisor.core.measure.runner import Run, RunRequest
from qadvisor.schemas.events import Error, Metric, Progress, Result


def _request(methods, **kw):
    return RunRequest(methods=methods, settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2), **kw)


def test_failures_become_results_and_the_run_goes_on(mock_backend):
    run = Run(_request(["mock-crash", "torchao-int4", "mock-passthrough"]), detect(with_backends=False))
    events = list(run.events())
    kinds = {type(e) for e in events}
    assert {Progress, Metric, Result, Error} <= kinds
    results = {r.method: r for r in run.results}
    assert results["mock-crash"].status == "failed" and "mock-crash always fails" in results["mock-crash"].reason
    assert results["torchao-int4"].status == "failed" and "CUDA" in results["torchao-int4"].reason
    ok = results["mock-passthrough"]
    assert ok.status == "ok" and ok.kl_mean == pytest.approx(0, abs=1e-6) and ok.top1_agreement == 1.0
    # Passing the fp32 model through: twice the bytes of the bf16 baseline.
    assert ok.compression_ratio == pytest.approx(0.5, rel=0.01)
    metric_names = {e.name for e in events if isinstance(e, Metric) and e.method == "mock-passthrough"}
    assert {"size_bytes", "decode_tok_s", "kl_mean", "peak_rss_bytes"} <= metric_names
    # the wait for the warm process's imports is announced once, by the first job to wait for it
    waits = [i for i, e in enumerate(events) if isinstance(e, Progress) and e.message == WARM_START]
    assert len(waits) == 1 and all(e.method != events[waits[0]].method for e in events[:waits[0]])


def test_cancel_stops_the_current_trial_and_keeps_finished_ones(mock_backend):
    run = Run(_request(["mock-passthrough", "fp32"]), detect(with_backends=False))
    cancel = threading.Event()
    for event in run.events(cancel):
        if isinstance(event, Progress) and event.method == "fp32" and event.step == "quantize":
            cancel.set()
    statuses = [(r.method, r.status) for r in run.results]
    assert statuses == [("mock-passthrough", "ok"), ("fp32", "cancelled")]

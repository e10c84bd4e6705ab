"""Faults a real library can cause inside a trial (forked warm or started fresh): each becomes that method's failure
with its cause, the methods after it are measured, and no trial process is left behind."""

from pathlib import Path

import psutil
import pytest

from qadvisor.core.hardware import detect
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.runner import Run, RunRequest


@pytest.mark.parametrize("warm", [True, False], ids=["forked", "fresh"])
def test_each_fault_fails_its_method_and_the_run_goes_on(mock_backend, tmp_path, warm):
    faults = ["mock-segfault", "mock-sigkill", "mock-hang", "mock-diskfull", "mock-oom"]
    request = RunRequest(methods=[*faults, "mock-passthrough"], work_dir=tmp_path / "work", warm_start=warm,
                         trial_timeout_s=15, settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2))
    run = Run(request, detect(with_backends=False))
    list(run.events())
    results = {r.method: r for r in run.results}
    assert results["mock-segfault"].status == "failed" and "SIGSEGV" in results["mock-segfault"].reason
    assert results["mock-sigkill"].status == "failed" and "SIGKILL" in results["mock-sigkill"].reason
    assert "out of memory (the OOM killer)" in results["mock-sigkill"].reason
    assert results["mock-oom"].status == "failed" and "out of memory: the trial reached" in results["mock-oom"].reason
    assert results["mock-hang"].status == "failed" and "timed out after 15 s" in results["mock-hang"].reason
    assert results["mock-diskfull"].status == "failed" and "No space left" in results["mock-diskfull"].reason
    assert results["mock-passthrough"].status == "ok", results["mock-passthrough"].reason
    export = run.export()
    assert export.complete and [r.method for r in export.results] == [*faults, "mock-passthrough"]
    left = [p for p in psutil.process_iter(["cwd"]) if str(tmp_path) in (p.info["cwd"] or "")]
    assert not left, left


def test_a_dead_warm_process_falls_back_to_fresh_ones(mock_backend, tmp_path):
    from qadvisor.schemas.events import Result

    request = RunRequest(methods=["mock-passthrough", "fp32"], work_dir=tmp_path / "work",
                         settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2))
    run = Run(request, detect(with_backends=False))
    for event in run.events():
        if isinstance(event, Result) and event.result.method == "mock-passthrough":
            run.forkserver.proc.kill()  # as the OOM killer might
            run.forkserver.proc.wait()
    assert [(r.method, r.status) for r in run.results] == [("mock-passthrough", "ok"), ("fp32", "ok")]
    assert run.forkserver.broken


@pytest.mark.parametrize("trial_too", [False, True], ids=["trial-finishes", "trial-killed-too"])
def test_a_warm_process_dying_mid_trial_is_named_not_read_as_the_trials_crash(mock_backend, tmp_path, trial_too):
    from qadvisor.schemas.events import Error, Progress

    request = RunRequest(methods=["fp32", "mock-passthrough"], work_dir=tmp_path / "work",
                         settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2))
    run = Run(request, detect(with_backends=False))
    errors, killed = [], False
    for event in run.events():
        # the trial's evaluation: its measuring process (forked by the warm one) has seconds of work left, where its
        # first step may already have ended by the time its first event is read here
        if isinstance(event, Progress) and event.method == "fp32" and event.step == "evaluate" and not killed:
            killed = True
            children = psutil.Process(run.forkserver.proc.pid).children()
            assert children or not trial_too, "the trial's process was gone before the warm process was killed"
            run.forkserver.proc.kill()  # the warm process goes (the OOM killer's pick), the trial it forked runs on...
            run.forkserver.proc.wait()
            for child in children if trial_too else []:
                child.kill()  # ...unless it goes too
        elif isinstance(event, Error):
            errors.append(event.message)
    results = {r.method: r for r in run.results}
    if trial_too:
        assert results["fp32"].status == "failed" and "the warm process that started the trial ended" in results["fp32"].reason
        assert "OOM killer" not in results["fp32"].reason
    else:
        assert results["fp32"].status == "ok" and not errors  # it reported its result: nothing failed
    assert results["mock-passthrough"].status == "ok"  # a fresh interpreter after the warm process is gone
    left = [p for p in psutil.process_iter(["cwd"]) if str(tmp_path) in (p.info["cwd"] or "")]
    assert not left, left


@pytest.fixture
def own_probes(tmp_path, monkeypatch):
    """Verdicts kept for this test alone: a kept fallback would change how later tests' trials start."""
    from qadvisor.core import paths

    monkeypatch.setattr(paths, "probe_dir", lambda root: tmp_path / "probes")
    return tmp_path / "probes"


# the two a real library showed here (llama.cpp's AMX kernels); every fatal signal is read alike (tests/unit/test_fallback.py)
@pytest.mark.parametrize("sig", ["SIGILL", "SIGSEGV"])
def test_a_fast_path_that_dies_of_any_fatal_signal_falls_back_and_says_so(mock_backend, own_probes, tmp_path, sig):
    from qadvisor.schemas.events import Error, Progress

    method = f"mock-fastpath-{sig.lower()}"
    request = RunRequest(methods=[method], work_dir=tmp_path / "work",
                         settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2))
    run = Run(request, detect(with_backends=False))
    events = list(run.events())
    result = run.results[0]
    assert result.status == "ok" and result.safe_config == "mock safe path", result.reason
    assert any(sig in note and "the mock's fast path" in note for note in result.notes)
    assert not [e for e in events if isinstance(e, Error)]  # a crash the fallback cured is no error
    (retry,) = [e.message for e in events if isinstance(e, Progress) and "once more without" in e.message]
    assert f"crashed ({sig})" in retry  # the first attempt's crash, with a log that outlives the run
    assert Path(retry.rsplit("log: ", 1)[1].split(" — ")[0]).is_file()
    assert list(own_probes.glob("fallback-mock-*.json"))
    if sig != "SIGSEGV":
        return
    again = Run(request, detect(with_backends=False))  # the next run starts in the safe configuration
    assert not [e for e in again.events() if isinstance(e, Error)]
    assert again.results[0].status == "ok" and again.results[0].safe_config == "mock safe path"


def test_a_crash_the_safe_configuration_does_not_cure_fails_and_keeps_no_verdict(mock_backend, own_probes, tmp_path):
    request = RunRequest(methods=["mock-segfault", "mock-passthrough"], work_dir=tmp_path / "work",
                         settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2))
    run = Run(request, detect(with_backends=False))
    list(run.events())
    failed, ok = run.results
    assert failed.status == "failed" and "the safer configuration did not help" in failed.reason
    assert Path(failed.reason.split("log: ", 1)[1].split(" ")[0]).is_file()
    assert ok.status == "ok" and ok.safe_config is None  # no verdict: the next method takes the fast path
    assert not list(own_probes.glob("fallback-mock-*.json"))


def test_a_trial_is_measured_in_a_process_that_did_not_quantize(mock_backend, tmp_path):
    request = RunRequest(methods=["mock-history"], work_dir=tmp_path / "work", reuse_cache=False,
                         settings=EvalSettings(threads=2, repeats=2, decode_tokens=4, windows=2))
    run = Run(request, detect(with_backends=False))
    list(run.events())
    assert run.results[0].status == "ok", run.results[0].reason

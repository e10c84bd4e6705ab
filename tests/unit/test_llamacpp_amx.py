"""llama.cpp's AMX kernels: probed once per build and machine, the verdict kept with the other fallback verdicts,
and a crash-free safe configuration that the results name (quantizers.llamacpp_amx, quantizers.fallback)."""

import signal

import pytest

from qadvisor.app.views import result_notes
from qadvisor.schemas.result import TrialResult
from qadvisor.quantizers import fallback, llamacpp_amx


def _probed(monkeypatch, answers: list):
    """probed_level with a build that has AMX and a probe that answers from `answers`; returns the probe's calls."""
    calls = []
    monkeypatch.setattr(llamacpp_amx, "amx_in_build", lambda: True)
    monkeypatch.setattr(llamacpp_amx, "build_key", lambda: "build1")
    monkeypatch.setattr(llamacpp_amx, "_levels", {})
    monkeypatch.setattr(llamacpp_amx, "_probe", lambda path, threads: calls.append(path) or answers.pop(0))
    return calls


@pytest.mark.parametrize("died", ["SIGILL", "SIGSEGV"])
def test_a_fault_is_probed_once_and_kept_for_the_next_process(monkeypatch, tmp_path, died):
    calls = _probed(monkeypatch, [died])
    assert llamacpp_amx.probed_level(tmp_path / "a.gguf", 2, tmp_path) == 1
    assert llamacpp_amx.probed_level(tmp_path / "b.gguf", 2, tmp_path) == 1  # this process: no second probe
    monkeypatch.setattr(llamacpp_amx, "_levels", {})  # the next trial process reads the kept verdict
    assert llamacpp_amx.probed_level(tmp_path / "c.gguf", 2, tmp_path) == 1
    assert calls == [tmp_path / "a.gguf"]
    verdict = fallback.kept(tmp_path, "llamacpp", "build1")
    assert verdict.level == 1 and verdict.signal == died


def test_a_probe_that_fails_otherwise_is_not_a_verdict(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, [None, ""])
    assert llamacpp_amx.probed_level(tmp_path / "a.gguf", 2, tmp_path) == 0  # the trial itself will say what failed
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(llamacpp_amx, "_levels", {})
    assert llamacpp_amx.probed_level(tmp_path / "a.gguf", 2, tmp_path) == 0  # asked again: it ran, and that is kept
    assert len(calls) == 2 and fallback.kept(tmp_path, "llamacpp", "build1").level == 0


def test_a_damaged_verdict_is_probed_again(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, [""])
    (tmp_path / fallback.VERDICT_FILE.format(backend="llamacpp", key="build1")).write_text("{")
    assert llamacpp_amx.probed_level(tmp_path / "a.gguf", 2, tmp_path) == 0
    assert len(calls) == 1


def test_a_build_without_amx_kernels_is_not_probed(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, ["SIGILL"])
    monkeypatch.setattr(llamacpp_amx, "amx_in_build", lambda: False)
    assert llamacpp_amx.probed_level(tmp_path / "a.gguf", 2, tmp_path) == 0
    assert calls == []


def test_the_probe_reads_every_fatal_signal_as_a_fault(monkeypatch, tmp_path):
    import subprocess

    for sig in fallback.FATAL_SIGNALS:
        done = subprocess.CompletedProcess([], -sig)
        monkeypatch.setattr(subprocess, "run", lambda *a, **k: done)
        assert llamacpp_amx._probe(tmp_path / "a.gguf", 2) == sig.name
    for code, answer in ((0, ""), (1, None), (-signal.SIGKILL, None)):
        done = subprocess.CompletedProcess([], code)
        assert llamacpp_amx._probe(tmp_path / "a.gguf", 2) == answer


def test_the_results_say_once_which_methods_ran_in_a_safe_configuration():
    def result(method, notes, status="ok"):
        return TrialResult(method=method, backend="llamacpp", bits=8, status=status, notes=notes)

    from qadvisor.quantizers.llamacpp import BACKEND

    note = fallback.Verdict(1, "SIGSEGV", llamacpp_amx.PROBED_BY).note(BACKEND.safe_configs)
    assert "extra buffer types" in note and "SIGSEGV" in note and "mmap" not in note
    results = [result("fp32", []), result("gguf-q8_0", [note]), result("gguf-q2_k", [note], "failed"),
               result("gguf-q4_k_m", [note])]
    assert result_notes(results) == [f"gguf-q8_0, gguf-q4_k_m: {note}"]


def test_a_cache_that_cannot_be_written_costs_a_probe_not_the_trial(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, ["SIGILL"])
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be
    assert llamacpp_amx.probed_level(tmp_path / "a.gguf", 2, blocked / "probes") == 1
    assert len(calls) == 1


def test_hardware_and_methods_say_what_an_earlier_run_found(monkeypatch, tmp_path):
    from qadvisor.app.views import method_rows  # `qadvisor methods` says it at each method of the backend
    from qadvisor.core import hardware
    from qadvisor.quantizers.base import Backend

    monkeypatch.setenv("QADVISOR_CACHE", str(tmp_path))
    monkeypatch.setattr(Backend, "available", lambda self, has_cuda: (True, "ok"))
    monkeypatch.setattr(llamacpp_amx, "build_key", lambda: "build1")

    def llamacpp_row():
        return next(r.reason for r in hardware.detect().backends if r.backend == "llamacpp")

    assert llamacpp_row() == "ok"  # nothing probed yet
    fallback.keep(tmp_path / "probes", "llamacpp", "build1", fallback.Verdict(1, "SIGSEGV", "gguf-q8_0"))
    assert "extra buffer types" in llamacpp_row() and "SIGSEGV" in llamacpp_row()
    rows = {r["name"]: r for r in method_rows(False, hardware.backend_findings())}
    assert "SIGSEGV" in rows["gguf-q4_k_m"]["finding"] and rows["fp32"]["finding"] is None
    monkeypatch.setattr(llamacpp_amx, "build_key", lambda: "build2")  # a rebuilt llama.cpp is asked anew
    assert llamacpp_row() == "ok"

"""llama.cpp's AMX kernels: probed once per build and machine, the verdict kept, and a crash-free fallback that the
results name (quantizers.llamacpp_amx; every GGUF trial died of SIGILL on an AMX machine before)."""

from qadvisor.app.views import result_notes
from qadvisor.models.result import TrialResult
from qadvisor.quantizers import llamacpp_amx


def _probed(monkeypatch, answers: list):
    """kernels_fault with a build that has AMX and a probe that answers from `answers`; returns the probe's calls."""
    calls = []
    monkeypatch.setattr(llamacpp_amx, "amx_in_build", lambda: True)
    monkeypatch.setattr(llamacpp_amx, "_build_key", lambda: "build1")
    monkeypatch.setattr(llamacpp_amx, "_verdicts", {})
    monkeypatch.setattr(llamacpp_amx, "_probe", lambda path, threads: calls.append(path) or answers.pop(0))
    return calls


def test_a_fault_is_probed_once_and_kept_for_the_next_process(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, [True])
    assert llamacpp_amx.kernels_fault(tmp_path / "a.gguf", 2, tmp_path)
    assert llamacpp_amx.kernels_fault(tmp_path / "b.gguf", 2, tmp_path)  # this process: no second probe
    monkeypatch.setattr(llamacpp_amx, "_verdicts", {})  # the next trial process reads the kept verdict
    assert llamacpp_amx.kernels_fault(tmp_path / "c.gguf", 2, tmp_path)
    assert calls == [tmp_path / "a.gguf"]
    assert [p.name for p in tmp_path.iterdir()] == ["llamacpp-amx-build1.json"]


def test_a_probe_that_fails_otherwise_is_not_a_verdict(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, [None, False])
    assert not llamacpp_amx.kernels_fault(tmp_path / "a.gguf", 2, tmp_path)  # the trial itself will say what failed
    assert not list(tmp_path.iterdir())
    assert not llamacpp_amx.kernels_fault(tmp_path / "a.gguf", 2, tmp_path)  # asked again, and now kept
    assert len(calls) == 2 and len(list(tmp_path.iterdir())) == 1


def test_a_damaged_verdict_is_probed_again(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, [False])
    (tmp_path / "llamacpp-amx-build1.json").write_text("{")
    assert not llamacpp_amx.kernels_fault(tmp_path / "a.gguf", 2, tmp_path)
    assert len(calls) == 1


def test_a_build_without_amx_kernels_is_not_probed(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, [True])
    monkeypatch.setattr(llamacpp_amx, "amx_in_build", lambda: False)
    assert not llamacpp_amx.kernels_fault(tmp_path / "a.gguf", 2, tmp_path)
    assert calls == []


def test_the_results_say_once_which_methods_ran_without_the_kernels():
    def result(method, notes, status="ok"):
        return TrialResult(method=method, backend="llamacpp", bits=8, status=status, notes=notes)

    note = llamacpp_amx.NOTE
    results = [result("fp32", []), result("gguf-q8_0", [note]), result("gguf-q2_k", [note], "failed"),
               result("gguf-q4_k_m", [note])]
    assert result_notes(results) == [f"gguf-q8_0, gguf-q4_k_m: {note}"]


def test_a_cache_that_cannot_be_written_costs_a_probe_not_the_trial(monkeypatch, tmp_path):
    calls = _probed(monkeypatch, [True])
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be
    assert llamacpp_amx.kernels_fault(tmp_path / "a.gguf", 2, blocked / "probes")
    assert len(calls) == 1


def test_hardware_says_what_an_earlier_probe_found(monkeypatch, tmp_path):
    from qadvisor.core import hardware
    from qadvisor.quantizers.base import Backend

    monkeypatch.setenv("QADVISOR_CACHE", str(tmp_path))
    monkeypatch.setattr(Backend, "available", lambda self, has_cuda: (True, "ok"))
    monkeypatch.setattr(llamacpp_amx, "amx_in_build", lambda: True)
    monkeypatch.setattr(llamacpp_amx, "_build_key", lambda: "build1")
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("cpu", ["AVX2", "AMX"]))

    def llamacpp_row():
        return next(r.reason for r in hardware.detect().backends if r.backend == "llamacpp")

    assert llamacpp_row() == "ok"  # nothing probed yet
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "llamacpp-amx-build1.json").write_text('{"faults": true}')
    assert "AMX kernels crash here" in llamacpp_row()
    from qadvisor.app.views import method_rows  # `qadvisor methods` says it at each GGUF method

    rows = {r["name"]: r for r in method_rows(False, hardware.backend_findings(hardware.detect(with_backends=False)))}
    assert "AMX kernels crash here" in rows["gguf-q4_k_m"]["finding"] and rows["fp32"]["finding"] is None
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("cpu", ["AVX2"]))  # a CPU without AMX is not asked
    assert llamacpp_row() == "ok"
    assert hardware.backend_findings(hardware.detect(with_backends=False)) == {}

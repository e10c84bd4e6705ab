"""The RAM check before a run: each trial's need (an estimate from peak RSS measured per backend) against what is
available; the methods that would not fit are named in one line, before anything is built or measured."""

import pytest

from qadvisor.core.measure import memory
from qadvisor.errors import UserError

GIB = 2**30


def test_each_backend_scales_with_the_model_and_the_mock_gets_the_largest_factor():
    small, large = (memory.need_bytes("llamacpp", p, 151936, 0) for p in (10**8, 10**9))
    assert large > small > memory.measured()["base_bytes"]
    assert memory.need_bytes("quanto", 10**9, 151936, 0) > memory.need_bytes("llamacpp", 10**9, 151936, 0)
    assert memory.need_bytes("mock", 10**9, 151936, 0) == max(memory.need_bytes(b, 10**9, 151936, 0)
                                                              for b in memory.measured()["factor"])
    scored = memory.need_bytes("torch", 10**8, 151936, 2048) - memory.need_bytes("torch", 10**8, 151936, 0)
    assert scored == 2 * 2048 * 151936 * 4  # the reference's log-probs and the trial's own


def test_the_methods_that_do_not_fit_are_named_and_the_others_not():
    params, vocab = 7 * 10**9, 152064  # Qwen2.5-7B
    with pytest.raises(UserError) as err:
        memory.check({"gguf-q4_k_m": "llamacpp", "quanto-int4": "quanto", "fp32": "torch"}, params, vocab, 0,
                     available=20 * GIB)
    message = str(err.value)
    assert "quanto-int4, fp32" in message and "gguf-q4_k_m" not in message and "\n" not in message
    memory.check({"gguf-q4_k_m": "llamacpp"}, params, vocab, 0, available=20 * GIB)


def test_a_run_is_refused_before_its_reference_step(tmp_path, monkeypatch):
    from collections import namedtuple

    import psutil

    from qadvisor.core.hardware import detect
    from qadvisor.core.measure.runner import Run, RunRequest

    vm = namedtuple("vm", "available total")
    request = RunRequest(methods=["gguf-q4_k_m", "quanto-int4"], cache_dir=tmp_path / "c", work_dir=tmp_path / "w")
    from qadvisor.core.measure.modelio import bundled_model_dir, stored_params

    params = stored_params(bundled_model_dir())
    need = {b: memory.need_bytes(b, params, 8192, 8 * 256) for b in ("quanto", "torch", "llamacpp")}
    assert need["quanto"] > need["torch"] > need["llamacpp"]  # the reference step is checked as the fp32 trial
    between = (need["quanto"] + need["torch"]) // 2
    monkeypatch.setattr(psutil, "virtual_memory", lambda: vm(between, 24 * GIB))
    with pytest.raises(UserError, match="not enough memory for quanto-int4: up to"):
        Run(request, detect(with_backends=False))
    assert not (tmp_path / "c").exists() and not (tmp_path / "w").exists()
    Run(request.model_copy(update={"methods": ["gguf-q4_k_m"]}), detect(with_backends=False))


def test_a_synthetic_model_is_checked_before_it_is_built(tmp_path, monkeypatch):
    from collections import namedtuple

    import psutil

    from qadvisor.core.hardware import detect
    from qadvisor.core.measure.runner import Run, RunRequest

    vm = namedtuple("vm", "available total")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: vm(6 * GIB, 24 * GIB))
    request = RunRequest(model_dir="synthetic:Qwen2.5-1.5B", methods=["gguf-q4_k_m", "quanto-int4", "fp32"],
                         cache_dir=tmp_path / "c", work_dir=tmp_path / "w")
    with pytest.raises(UserError, match=r"not enough memory for quanto-int4, fp32: up to \d"):
        Run(request, detect(with_backends=False))
    assert not (tmp_path / "c" / "synthetic").exists()

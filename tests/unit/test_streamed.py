"""Streamed accuracy (core.measure.streamed) on the bundled model with the built-in and mock backends: the reference
matches the whole model's, a method that fails leaves the others, a stop keeps what finished. The real backends
against their whole-model trials: tests/integration/test_streamed.py."""

import threading

import pytest

from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.streamed import StreamJob, StreamRequest, stream
from qadvisor.errors import UserError
from qadvisor.schemas.export import StreamedAccuracy
from tests.conftest import BUNDLED

SETTINGS = EvalSettings(window=64, windows=2, threads=1)


@pytest.fixture(autouse=True)
def _mock(mock_backend):
    yield


def _windows(count=2, window=64):
    from transformers import AutoTokenizer

    from qadvisor.core.measure.metrics import eval_windows

    ids = AutoTokenizer.from_pretrained(str(BUNDLED))((BUNDLED / "heldout.txt").read_text()).input_ids
    return eval_windows(ids, window, count)


def _stream(methods, cancel=None, after=None):
    out = StreamedAccuracy(model="bundled", path=str(BUNDLED))
    for event in (stream(StreamRequest(BUNDLED, methods, _windows()), out, cancel)):
        if after is not None and after(event):
            cancel.set()
    return out


def test_the_streamed_reference_is_the_whole_fp32_model():
    import torch

    from qadvisor.core.measure.metrics import logprobs, perplexity
    from qadvisor.quantizers.base import load_hf

    windows = _windows()
    whole = perplexity(logprobs(load_hf(BUNDLED, torch.float32, "cpu"), windows, "cpu"), windows)
    out = _stream(["fp32", "bf16"])
    assert out.ref_ppl == pytest.approx(whole, rel=1e-4)
    fp32, bf16 = out.methods
    assert fp32.kl_mean == pytest.approx(0.0, abs=1e-6) and fp32.top1_agreement == 1.0
    assert 0 < bf16.kl_mean < 0.01  # bf16 activations: a small, real loss
    assert out.tokens == windows[:, 1:].numel() and out.layers == 8


def test_a_method_that_fails_is_named_and_the_others_are_measured():
    out = _stream(["mock-crash", "mock-passthrough"])
    crash, passthrough = out.methods
    assert "mock-crash always fails" in crash.error and crash.ppl is None
    assert passthrough.ppl == pytest.approx(out.ref_ppl, rel=1e-6)


def test_a_stop_keeps_the_methods_that_finished():
    cancel = threading.Event()
    out = _stream(["mock-passthrough", "bf16"], cancel,
                  after=lambda e: e.method == "bf16 streamed" and "layer 2/" in e.message)
    assert out.ref_ppl is not None
    assert [m.method for m in out.methods] == ["mock-passthrough"]


def test_a_job_checks_its_input_and_names_what_it_cannot_stream(tmp_path):
    job = StreamJob(BUNDLED, ["fp32", "torchao-int4", "bnb-nf4+kv-int4", "mock-passthrough"], BUNDLED / "heldout.txt",
                    SETTINGS)
    assert job.methods == ["fp32", "mock-passthrough"]
    assert "whole models only" in job.not_streamed["torchao-int4"]
    assert "a KV-cache stack" in job.not_streamed["bnb-nf4+kv-int4"]
    with pytest.raises(UserError, match="not found"):
        StreamJob(tmp_path / "nothing", ["fp32"], BUNDLED / "heldout.txt", SETTINGS)


def test_every_method_asked_for_is_streamed_or_named_and_the_bundled_model_is_not_said_to_stream(tmp_path):
    import shutil

    from qadvisor.app.auto import AutoSession
    from qadvisor.app.options import RunOptions
    from qadvisor.schemas.priorities import load_profile

    copy = tmp_path / "copy"
    shutil.copytree(BUNDLED, copy)
    said = []
    session = AutoSession(RunOptions(model=str(copy), stream=True, methods=["fp32", "gguf-q4_k_m", "hqq-int4"]),
                          load_profile("balanced"), said.append)
    assert session.stream_job.methods == ["gguf-q4_k_m"] and "streamed one layer at a time" in said[0]
    assert set(session.stream_job.not_streamed) == {"hqq-int4"}  # fp32 is the reference every figure is against
    assert "--target-methods" in session.stream_job.not_streamed["hqq-int4"]
    said.clear()
    session = AutoSession(RunOptions(model=str(BUNDLED), stream=True, methods=["fp32", "gguf-q4_k_m"]),
                          load_profile("balanced"), said.append)
    assert session.stream_job is None and session.opts.model == str(BUNDLED)
    assert said == [f"--stream: {BUNDLED.name} is the bundled model, which the whole-model trials measure exactly: "
                    "nothing is streamed"]


def test_a_job_refuses_a_model_whose_stream_would_not_fit(monkeypatch):
    from types import SimpleNamespace

    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=1 << 20))
    with pytest.raises(UserError, match="not enough memory to stream"):
        StreamJob(BUNDLED, ["fp32"], BUNDLED / "heldout.txt", SETTINGS)


def test_the_ggml_round_trip_is_llama_cpps_own():
    """Q8_0 by hand (blocks of 32, rounded against absmax/127, read back with that scale stored as fp16) against
    llama.cpp's quantize and dequantize; the rows split between two threads."""
    pytest.importorskip("llama_cpp")
    import torch

    from qadvisor.quantizers.ggml import round_trip

    rows = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    blocks = rows.view(5, 2, 32)
    scale = blocks.abs().amax(-1, keepdim=True) / 127
    by_hand = (torch.round(blocks * (1 / scale)) * scale.half().float()).view(5, 64)
    assert torch.equal(round_trip("Q8_0", rows, threads=2), by_hand)
    assert torch.equal(round_trip("F16", rows), rows.half().float())


def test_a_layer_that_would_not_fit_stops_with_one_line_and_the_run_goes_on(monkeypatch):
    """The room for each layer is checked before it is built: short of it, the stream says so instead of swapping."""
    from types import SimpleNamespace

    import psutil

    out = StreamedAccuracy(model="bundled", path=str(BUNDLED))
    request = StreamRequest(BUNDLED, ["bf16"], _windows())
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=1 << 10))
    list(stream(request, out))
    assert out.ref_ppl is None and out.methods == []
    assert out.error.startswith("the fp32 reference: MemoryError: layer 1 needs about")

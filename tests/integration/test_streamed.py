"""Streaming measures what a whole-model trial measures: on the bundled model, each real backend's streamed PPL
and KL against the same method quantized, saved and reloaded whole (the trial's own steps, in this process).
benchmarks/streamed_vs_whole.py runs every method and records the figures in RESULTS.md."""

import pytest

from tests.conftest import BUNDLED

torch = pytest.importorskip("torch")


def _windows():
    from transformers import AutoTokenizer

    from qadvisor.core.measure.metrics import eval_windows

    ids = AutoTokenizer.from_pretrained(str(BUNDLED))((BUNDLED / "heldout.txt").read_text()).input_ids
    return eval_windows(ids, 128, 4)


def _calib() -> list[str]:
    from qadvisor.core.measure.modelio import paragraphs

    return paragraphs(BUNDLED / "calib.txt")


def _whole(method, windows, ref_lp, tmp_path):
    from qadvisor.core.hardware import fast_bf16
    from qadvisor.core.measure.metrics import accuracy
    from qadvisor.quantizers import registry
    from qadvisor.quantizers.base import TrialContext

    spec = registry.methods()[method]
    backend = registry.backend_for(spec)
    ctx = TrialContext(threads=2, max_tokens=256, calib_texts=_calib(), fast_bf16=fast_bf16())
    backend.save(backend.quantize(BUNDLED, spec, ctx), spec, tmp_path)
    return accuracy(backend.load(tmp_path, spec, ctx), windows, ref_lp, "cpu")


# GGUF: llama.cpp's runtime rounds each matmul's input to 8 bits; the streamed path does too (ggml.dot_rounded).
# GPTQ: each layer solved on its inputs from the method's own quantized calibration stream, as GPTQModel does whole.
METHODS = ["bnb-nf4", "bnb-int8", "hqq-int4", "quanto-int4", "torchao-int8", "gguf-q8_0", "gguf-q2_k", "gptq-int4"]


@pytest.mark.parametrize("method", METHODS)
def test_streamed_accuracy_matches_the_whole_model_trial(tmp_path, method):
    pytest.importorskip({"bnb": "bitsandbytes", "hqq": "hqq", "quanto": "optimum.quanto", "torchao": "torchao",
                         "gguf": "llama_cpp", "gptq": "gptqmodel"}[method.split("-")[0]])
    from qadvisor.core.measure.metrics import logprobs
    from qadvisor.core.measure.streamed import StreamRequest, stream
    from qadvisor.quantizers.base import load_hf
    from qadvisor.schemas.export import StreamedAccuracy

    windows = _windows()
    ref_lp = logprobs(load_hf(BUNDLED, torch.float32, "cpu"), windows, "cpu")
    whole = _whole(method, windows, ref_lp, tmp_path)
    out = StreamedAccuracy(model="bundled", path=str(BUNDLED))
    list(stream(StreamRequest(BUNDLED, [method], windows, threads=2, calib_texts=_calib()), out))
    streamed = out.methods[0]
    assert not streamed.error
    assert streamed.ppl == pytest.approx(whole.ppl, rel=0.005)
    assert streamed.kl_mean == pytest.approx(whole.kl_mean, rel=0.10)
    # each layer's seconds split by where they went: what the checkpoint read, the library's quantizing, the compute
    split, total = streamed.layer_time, streamed.seconds_per_layer
    assert min(split.read, split.quantize, split.compute) >= 0 and split.read > 0 and split.compute > 0
    assert split.read + split.quantize + split.compute == pytest.approx(total, rel=0.2)
    assert out.ref_layer_time.quantize < out.ref_layer_time.compute + out.ref_layer_time.read  # fp32: nothing to solve

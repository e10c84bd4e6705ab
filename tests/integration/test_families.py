"""Each Qwen family through the real backends on a toy of its layer types: a method quantizes every expert or is
refused with its reason before it runs, and the planner's bytes hold for MoE models."""

import json

import pytest

from qadvisor.core import architectures
from qadvisor.core.plan import planner
from tests.conftest import run_cli
from tests.samples import toy_model

# GGUF per family: the streamed test below has llama.cpp run each family's file whole
METHODS = "fp32,gptq-int4,bnb-nf4,fp32+kv-int4"


def _run(tmp_path, family: str) -> dict:
    model = toy_model(family, tmp_path / family)
    out = tmp_path / "run.json"
    proc = run_cli("--auto", "--model", str(model), "--methods", METHODS, "--repeats", "1", "--decode-tokens", "8",
                   "--export", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {r["method"]: r for r in json.loads(out.read_text())["results"]}, model


@pytest.mark.parametrize("family", ["qwen3", "qwen3_moe", "qwen3_5", "qwen3_5_moe", "qwen3_next"])
def test_a_family_is_measured_or_each_refusal_says_why(tmp_path, family):
    results, model = _run(tmp_path, family)
    arch = architectures.resolve_architecture(str(model))
    refused = {m: r["reason"] for m, r in results.items() if r["status"] != "ok"}
    expected = set()
    if arch.is_moe:
        expected.add("bnb-nf4")
        assert "bitsandbytes replaces nn.Linear modules only" in refused["bnb-nf4"]
    if arch.is_hybrid:
        expected.add("fp32+kv-int4")
        assert "QuantizedCache" in refused["fp32+kv-int4"]
    assert set(refused) == expected, refused
    gptq = results["gptq-int4"]
    predicted, _ = planner.weights_bytes(arch, planner.formats()["gptq-int4"])
    assert gptq["size_bytes"] == pytest.approx(predicted, rel=0.02)  # every expert quantized, as planned
    table = arch.vocab_size * arch.hidden_size * 2 * (1 if arch.tie_word_embeddings else 2)  # kept in bf16
    assert gptq["size_bytes"] - table < 0.35 * (results["fp32"]["size_bytes"] / 2 - table)  # the layers at ~4 bits


# a family's methods whose layer-by-layer path can run there (an MoE model's experts: llama.cpp's rounding only); a
# GGUF method's whole-model trial is llama.cpp running qadvisor's file, so a match also checks the GGUF writer
STREAMED = [("qwen3", "bnb-nf4"), ("qwen3", "gguf-q4_k_m"), ("qwen3_moe", "gguf-q4_k_m"), ("qwen3_moe", "gguf-q8_0"),
            ("qwen3_5", "hqq-int4"), ("qwen3_5", "quanto-int4"), ("qwen3_5", "gguf-q8_0"), ("qwen3_5_moe", "gguf-q8_0"),
            ("qwen3_next", "gguf-q4_k_m")]


@pytest.mark.parametrize("family, method", STREAMED)
def test_streamed_accuracy_of_a_family_matches_its_whole_model_trial(tmp_path, monkeypatch, family, method):
    """The streamed path builds each family's own layers (fused experts, linear attention, zero-centred norms): its
    PPL and KL against the same method quantized, saved and reloaded whole, on the toy's random weights."""
    import torch

    from qadvisor.core.hardware import fast_bf16
    from qadvisor.core.measure.metrics import accuracy, eval_windows, logprobs
    from qadvisor.core.measure.streamed import StreamRequest, stream
    from qadvisor.quantizers import registry
    from qadvisor.quantizers.base import TrialContext, load_hf
    from qadvisor.schemas.export import StreamedAccuracy
    from transformers import AutoTokenizer

    model = toy_model(family, tmp_path / family)
    ids = AutoTokenizer.from_pretrained(str(model))((model / "heldout.txt").read_text()).input_ids
    windows = eval_windows(ids, 128, 4)
    ref_lp = logprobs(load_hf(model, torch.float32, "cpu"), windows, "cpu")
    spec = registry.methods()[method]
    backend = registry.backend_for(spec)
    ctx = TrialContext(threads=2, max_tokens=256, fast_bf16=fast_bf16())
    monkeypatch.chdir(tmp_path)  # llama.cpp's scratch file goes to the working folder, as in a trial
    (tmp_path / "whole").mkdir()
    backend.save(backend.quantize(model, spec, ctx), spec, tmp_path / "whole")
    whole = accuracy(backend.load(tmp_path / "whole", spec, ctx), windows, ref_lp, "cpu")
    out = StreamedAccuracy(model=family, path=str(model))
    list(stream(StreamRequest(model, [method], windows, threads=2), out))
    streamed = out.methods[0]
    assert not streamed.error
    assert streamed.ppl == pytest.approx(whole.ppl, rel=0.005), (streamed, whole)
    assert streamed.kl_mean == pytest.approx(whole.kl_mean, rel=0.10, abs=1e-5), (streamed, whole)


def test_a_qwen3_fp8_release_is_measured_as_shipped_and_says_it_was_dequantized(tmp_path):
    from tests.samples import fp8_checkpoint

    reference = toy_model("qwen3", tmp_path / "qwen3")
    (reference / "synthetic.json").unlink()  # scored, as a real checkpoint and its reference are
    fp8 = fp8_checkpoint(reference, tmp_path / "qwen3-fp8")
    out = tmp_path / "run.json"
    proc = run_cli("--auto", "--model", str(fp8), "--reference", str(reference), "--repeats", "1",
                   "--decode-tokens", "8", "--export", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = next(r for r in json.loads(out.read_text())["results"] if r["method"] == "as-shipped:fp8-e4m3")
    assert result["status"] == "ok" and 0 < result["kl_mean"] < 0.01
    assert any("dequantized to bf16" in note for note in result["notes"])
    planned, _ = planner.weights_bytes(architectures.resolve_architecture(str(reference)), planner.formats()["fp8"])
    assert result["size_bytes"] == pytest.approx(planned, rel=0.02)  # the planner's fp8 is the shipped layout

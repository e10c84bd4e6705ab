"""Published accuracy at the planned model's size (core.advise.evidence): Qwen's own figures where it has them, llama.cpp's for
the nearest-size Llama within a factor of three, Qwen's benchmark scores for its GPTQ and AWQ releases, and nothing
where none is known."""

import json
from pathlib import Path

import pytest

from qadvisor.core.advise.evidence import evidence, params_b

# a verbatim copy of the workplace's reference data (../shared/reference), kept with the tests so a clean clone runs
# them: the package's own transcription is checked against it
SHARED = Path(__file__).resolve().parents[1] / "data" / "qwen2-quantized-accuracy.json"


def test_qwens_own_gguf_perplexities_at_the_targets_size():
    q2 = evidence("Qwen2.5-72B", "gguf-q2_k")
    assert q2.ppl_delta_pct == pytest.approx(100 * (5.91 / 5.58 - 1)) and q2.kl_mean is None
    assert q2.figure == "Qwen2-72B-Instruct Q2_K: wikitext PPL 5.58 → 5.91" and "model cards" in q2.source
    assert evidence("Qwen2.5-0.5B", "gguf-q4_k_m").ppl_delta_pct == pytest.approx(100 * (15.36 / 15.11 - 1))


def test_llama_cpps_figures_where_qwen_published_none_labelled_with_their_model():
    q4 = evidence("Qwen2.5-14B", "gguf-q4_k_m")  # Llama-3-8B is 1.75× smaller: near enough, and it says so
    assert q4.figure.startswith("Llama-3-8B Q4_K_M") and q4.kl_mean == 0.031273 and q4.top1 == 0.91901
    assert "not Qwen" in q4.source and "LLaMA 3 8b Scoreboard" in q4.source
    big = evidence("Qwen2.5-32B", "gguf-q2_k")
    assert big.figure.startswith("Llama-2-70B Q2_K") and big.ppl_delta_pct == pytest.approx(8.82, abs=0.01)
    assert evidence("Qwen2.5-32B", "gguf-q8_0") is None  # the 70B table has no Q8_0, the 8B is 4× off


def test_qwens_benchmark_average_for_its_gptq_and_awq_releases():
    int4 = evidence("Qwen2.5-72B", "gptq-int4")
    assert int4.score_delta_pct == pytest.approx(100 * (81.2 / 81.3 - 1)) and int4.ppl_delta_pct is None
    assert int4.figure == "Qwen2-72B-Instruct GPTQ-Int4: benchmark average (MMLU, C-Eval, IFEval) 81.3 → 81.2"
    assert "published by Qwen" in int4.source and "quantization_benchmark" in int4.source
    assert evidence("Qwen2.5-7B", "awq-int4").score_delta_pct == pytest.approx(100 * (64.1 / 66.9 - 1))
    assert evidence("Qwen2.5-0.5B", "gptq-int8").score_delta_pct == pytest.approx(100 * (32.6 / 34.4 - 1))


def test_a_benchmark_from_the_nearest_qwen2_size_names_it():
    assert evidence("Qwen2.5-14B", "gptq-int4").figure.startswith("Qwen2-7B-Instruct GPTQ-Int4")  # 2× off
    assert evidence("Qwen2.5-32B", "awq-int4").figure.startswith("Qwen2-72B-Instruct AWQ")  # 2.25× off, not 4.6×
    assert evidence("Qwen2.5-3B", "gptq-int8").figure.startswith("Qwen2-1.5B-Instruct GPTQ-Int8")
    assert evidence("Qwen2.5-300B", "gptq-int4") is None  # over three times the largest published


@pytest.mark.parametrize("model, method", [("Qwen2.5-72B", "bnb-nf4"), ("Qwen2.5-72B", "gptq-int2"),
                                           ("Qwen2.5-72B", "gptq-int4+kv-int4"),
                                           ("Qwen2.5-72B", "gguf-q4_k_m+kv-int4"), ("my-checkpoint", "gguf-q4_k_m"),
                                           ("my-checkpoint", "awq-int4")])
def test_nothing_is_known_for_other_methods_stacks_or_a_model_of_no_known_size(model, method):
    assert evidence(model, method) is None


def test_the_sizes_in_a_name():
    assert [params_b(m) for m in ("Qwen2.5-72B", "Qwen2.5-0.5B", "Qwen2.5-7B-Instruct", "x")] == [72, 0.5, 7, None]


def test_qwens_figures_are_the_reference_datas():
    from qadvisor.core.advise.evidence import _data

    shared = json.loads(SHARED.read_text())["gguf_wikitext_ppl"]
    assert {m: row["ppl"] for m, row in _data()["qwen"]["models"].items()} == \
        {m: v for m, v in shared.items() if m != "columns"}


def test_qwens_benchmarks_are_the_reference_datas():
    from qadvisor.core.advise.evidence import _data

    shared = json.loads(SHARED.read_text())["benchmarks"]
    assert _data("qwen2-published-accuracy.json")["benchmarks"] == {m: v for m, v in shared.items() if m != "columns"}

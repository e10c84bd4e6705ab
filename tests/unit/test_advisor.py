"""The advisor on recorded results: limits, scoring, archetypes and the edge cases."""

import pytest

from qadvisor.core.advise import advisor
from qadvisor.schemas.priorities import Limits, Priorities, load_profile
from qadvisor.schemas.result import TrialResult
from tests.samples import RECORDED, result


def test_presets_give_a_b_c():
    storage = advisor.advise(RECORDED, load_profile("storage-first"))
    latency = advisor.advise(RECORDED, load_profile("latency-first"))
    balanced = advisor.advise(RECORDED, load_profile("balanced"))
    # storage-first: the smallest within its +25 % perplexity limit (int2 breaks it)
    assert (storage.archetype, storage.method) == ("A", "int3")
    assert "int2" in storage.ruled_out
    # latency-first: the fastest quantized method; fp32 decodes faster, but an unquantized baseline is never a pick
    assert (latency.archetype, latency.method) == ("B", "int4-fast")
    assert latency.label("fp32") == "base" and latency.fits["fp32"] == ["C"]
    # balanced: neither the smallest nor the fastest
    assert balanced.archetype == "C" and balanced.method not in ("int3", "fp32")


def test_same_input_same_answer():
    p = load_profile("balanced")
    assert advisor.advise(RECORDED, p) == advisor.advise(list(RECORDED), p)


def test_recommendation_carries_parts_runner_up_front_and_flip():
    rec = advisor.advise(RECORDED, load_profile("balanced"))
    assert rec.runner_up and rec.runner_up != rec.method
    assert set(rec.scores) == {r.method for r in RECORDED if r.method not in rec.ruled_out}
    s = rec.scores[rec.method]
    assert 0 <= s.storage <= 1 and 0 <= s.latency <= 1 and 0 <= s.accuracy <= 1
    assert "fp32" in rec.pareto_front and "int2" in rec.pareto_front  # fastest+exact, smallest
    assert rec.flip
    assert any("MiB on disk" in r for r in rec.reasons) and any("tok/s" in r for r in rec.reasons)


def test_pareto_front_drops_dominated():
    dominated = result("worse", 20, 30.0, 0.01, 1.0)  # int8 is smaller, faster and more accurate
    assert "worse" not in advisor.pareto_front(RECORDED + [dominated])


def test_hard_limits_exclude_and_explain():
    limits = Limits(max_size_bytes=11_000_000, min_decode_tok_s=22, max_ppl_rise_pct=10)
    rec = advisor.advise(RECORDED, Priorities(limits=limits))
    assert rec.method == "int3"  # the only one ≤ 11 MB, ≥ 22 tok/s and ≤ +10 % perplexity
    assert "size" in " ".join(rec.ruled_out["int8"]) and "decode" in " ".join(rec.ruled_out["int4-slow"])
    assert "perplexity" in " ".join(rec.ruled_out["int2"])
    assert rec.runner_up is None


def test_nothing_feasible_names_the_closest_and_the_miss():
    p = Priorities(limits=Limits(max_size_bytes=9_000_000, max_ppl_rise_pct=1.0))
    rec = advisor.advise(RECORDED, p)
    assert rec.method is None and rec.archetype is None
    assert rec.closest in {r.method for r in RECORDED}
    assert any("misses by" in r for r in rec.reasons)
    assert set(rec.ruled_out) == {r.method for r in RECORDED}


def test_one_method_only():
    rec = advisor.advise([RECORDED[1]], load_profile("balanced"))
    assert rec.method == "int8" and rec.runner_up is None
    assert rec.scores["int8"].total == pytest.approx(1.0)


def test_ties_break_towards_accuracy_then_size():
    a = result("a", 10, 10.0, 0.01, 1.0)
    b = result("b", 10, 10.0, 0.01, 1.0)
    assert advisor.advise([b, a], load_profile("balanced")).method == "a"
    c = result("c", 10, 10.0, 0.005, 0.5)
    assert advisor.rank([a, c], {"storage": 1.0, "latency": 0.0, "accuracy": 0.0})[0][0] == "c"


def test_failed_results_are_never_candidates():
    failed = TrialResult(method="broken", backend="x", bits=4, status="failed", reason="boom")
    rec = advisor.advise(RECORDED + [failed], load_profile("balanced"))
    assert "broken" not in rec.scores and rec.method != "broken"


def test_no_results():
    rec = advisor.advise([], load_profile("balanced"))
    assert rec.method is None and "no method" in rec.reasons[0]


def test_priorities_name_the_team():
    assert advisor.team({"storage": 1.0, "latency": 0.0, "accuracy": 0.0}) == "A"
    assert advisor.team({"storage": 0.2, "latency": 0.5, "accuracy": 0.3}) == "B"
    assert advisor.team({"storage": 1 / 3, "latency": 1 / 3, "accuracy": 1 / 3}) == "C"
    assert advisor.team({"storage": 0.5, "latency": 0.5, "accuracy": 0.0}) == "C"  # two leaders: no single bias
    assert advisor.team({"storage": 0.1, "latency": 0.1, "accuracy": 0.8}) is None


def test_balanced_keeps_to_tool_c_and_says_what_scores_more():
    # a 4-bit method that is both the fastest and small wins equal weights, but it is the latency pick (B)
    runs = [result("fp32", 60, 100.0, 0.0, 0.0), result("int8", 19, 120.0, 0.0001, 0.0),
            result("int4-fast", 13, 200.0, 0.002, 0.3), result("int2", 8, 40.0, 0.01, 1.0)]
    rec = advisor.advise(runs, load_profile("balanced"))
    assert rec.archetypes["int4-fast"] == "B" and rec.archetypes["int2"] == "A"
    assert rec.scores["int4-fast"].total > rec.scores[rec.method].total
    assert (rec.archetype, rec.team) == ("C", "C") and rec.method in ("fp32", "int8")
    assert rec.runner_up == "int4-fast" and any("more than the pick" in r for r in rec.reasons)
    assert advisor.advise(runs, load_profile("latency-first")).method == "int4-fast"


def test_accuracy_first_takes_the_best_fit_whatever_its_archetype():
    rec = advisor.advise(RECORDED, load_profile("accuracy-first"))
    assert rec.team is None
    quantized = [m for m in rec.scores if m not in rec.baselines]
    assert rec.method == max(quantized, key=lambda m: rec.scores[m].total)


def test_a_team_with_no_method_of_its_archetype_gets_the_best_overall():
    # the smallest and the fastest, nothing in between: a balanced team has no Tool C method
    runs = [result("small", 8, 20.0, 0.01, 1.0), result("fast", 20, 100.0, 0.0, 0.0)]
    rec = advisor.advise(runs, load_profile("balanced"))
    assert rec.team == "C" and rec.archetype in ("A", "B")
    assert rec.method == max(rec.scores, key=lambda m: rec.scores[m].total)
    assert "but no method measured here is Tool C: the best-scoring one instead" in rec.reasons[0]
    limited = Priorities(limits=Limits(max_size_bytes=15_000_000))  # a C method that the limits rule out
    middle = result("middle", 16, 50.0, 0.001, 0.1)
    rec = advisor.advise(runs + [middle], limited)
    assert "no Tool C method meets the limits" in rec.reasons[0]


def test_the_smallest_can_also_be_the_fastest():
    # llama.cpp on a CPU: the 2-bit file decodes fastest; it serves both a storage- and a latency-bound team
    runs = [result("q8", 16, 2000.0, 0.0001, 0.0), result("q4", 12, 2050.0, 0.0002, 0.1),
            result("q2", 9, 2300.0, 0.002, 0.4)]
    storage = advisor.advise(runs, load_profile("storage-first"))
    latency = advisor.advise(runs, load_profile("latency-first"))
    assert (storage.archetype, storage.method) == ("A", "q2")
    assert (latency.archetype, latency.method) == ("B", "q2")
    assert latency.fits["q2"] == ["A", "B"] and latency.archetypes["q2"] == "A"


def test_a_pick_within_the_measured_noise_says_so():
    a = result("a", 16, 200.0, 0.001, 0.1)  # both low compression (47 % smaller) and near the fastest: both B
    b = result("b", 16, 196.0, 0.001, 0.1)
    steady = advisor.advise([a, b, result("c", 30, 50.0, 0.0, 0.0)], load_profile("latency-first"))
    assert steady.method == "a" and not any("too close to call" in r for r in steady.reasons)
    noisy = [a.model_copy(update={"decode_tok_s_spread": 20.0}), b.model_copy(update={"decode_tok_s_spread": 20.0}),
             result("c", 30, 50.0, 0.0, 0.0)]
    rec = advisor.advise(noisy, load_profile("latency-first"))
    assert rec.method == "a" and any("too close to call" in r and "b would score higher" in r for r in rec.reasons)


def test_b_is_low_compression_unless_it_is_the_fastest():
    # q4 is near the fastest but 60 % smaller: a middle method (C), as the seed's "B: low compression" says
    runs = [result("q8", 16, 1900.0, 0.0001, 0.0), result("q4", 12, 2000.0, 0.0002, 0.1),
            result("q2", 9, 2100.0, 0.002, 0.4), result("int8", 19, 150.0, 0.0, 0.0)]
    rec = advisor.advise(runs, load_profile("balanced"))
    assert rec.fits["q4"] == ["C"] and rec.fits["q8"] == ["B"] and rec.fits["q2"] == ["A", "B"]
    assert (rec.archetype, rec.method) == ("C", "q4")


def test_a_dominated_method_is_never_the_answer():
    # the only Tool C method is beaten on size, speed and loss by a Tool B one: the team falls back to the best
    runs = [result("fast", 16, 300.0, 0.0001, 0.0), result("slow", 17, 100.0, 0.001, 0.1),
            result("tiny", 5, 50.0, 0.05, 4.0)]
    rec = advisor.advise(runs, load_profile("balanced"))
    assert rec.fits["slow"] == ["C"] and "slow" not in rec.pareto_front
    assert rec.method != "slow"
    assert "each Tool C method measured here within the limits (slow) is beaten on size, speed and loss at once" \
        in rec.reasons[0]  # not "no Tool C method meets the limits": it does, and loses anyway


def test_too_close_to_call_uses_the_measured_cv():
    a = result("a", 16, 200.0, 0.001, 0.1)
    b = result("b", 16, 196.0, 0.001, 0.1)
    c = result("c", 30, 50.0, 0.0, 0.0)
    steady = [a.model_copy(update={"decode_cv": 0.002}), b.model_copy(update={"decode_cv": 0.002}), c]
    assert not any("too close" in r for r in advisor.advise(steady, load_profile("latency-first")).reasons)
    noisy = [a.model_copy(update={"decode_cv": 0.03}), b.model_copy(update={"decode_cv": 0.03}), c]
    rec = advisor.advise(noisy, load_profile("latency-first"))
    assert any("twice the decode CV" in r and "3.0 %" in r for r in rec.reasons)
    assert advisor.decode_noise(noisy[0]) == 2 * 0.03 * 200.0


def test_an_unquantized_baseline_is_not_the_balanced_pick_while_anything_else_is_measured():
    # as `--auto --methods fp32,bnb-nf4,gguf-q4_k_m` on a CPU: fp32 is neither smallest nor fastest, so "C" by the
    # numbers, but twice the size of bf16 balances nothing
    runs = [result("fp32", 60, 200.0, 0.0, 0.0), result("nf4", 13, 250.0, 0.0015, 0.1),
            result("q4", 12, 1500.0, 0.0002, 0.0)]
    rec = advisor.advise(runs, load_profile("balanced"))
    assert rec.archetypes["fp32"] == "C" and rec.method != "fp32"
    assert rec.baselines == ["fp32"] and rec.label("fp32") == "base" and rec.label("nf4") == "A"
    assert "fp32" not in (rec.runner_up, *rec.reasons[-1:])  # neither the runner-up nor a close call
    for profile in ("balanced", "storage-first", "latency-first", "accuracy-first"):
        only = advisor.advise([runs[0]], load_profile(profile))  # a run cancelled after fp32, or --methods fp32
        assert only.method is None and only.archetype is None and only.baselines == ["fp32"]
        assert "only unquantized baselines (fp32)" in only.reasons[0]
    one = advisor.advise(runs[:2], load_profile("balanced"))
    assert one.method == "nf4" and any("only one quantized method (nf4) to judge: its archetype and score compare it "
                                       "with the fp32 baseline alone;" in r for r in one.reasons)


def test_a_perplexity_rise_never_beats_a_benchmark_drop():
    """Published evidence at a planned model's size: one method's perplexity rise, another's benchmark drop. Smaller,
    faster and a smaller number would dominate on one scale; they are two measures, so neither beats the other."""
    def published(method, size_mb, tok_s, ppl=None, score=None):
        r = result(method, size_mb, tok_s, None, ppl)
        return r.model_copy(update={"score_delta_pct": score, "accuracy_basis": "published", "kl_mean": None})

    ppl, score = published("gguf-q4_k_m", 10, 30.0, ppl=1.0), published("gptq-int4", 12, 20.0, score=-2.0)
    assert set(advisor.pareto_front([ppl, score])) == {"gguf-q4_k_m", "gptq-int4"}
    same = published("gguf-q3_k_m", 12, 20.0, ppl=2.0)
    assert advisor.pareto_front([ppl, same]) == ["gguf-q4_k_m"]  # one kind: beaten as before
    rec = advisor.advise([ppl, score], load_profile("balanced"))
    assert any("cannot be compared" in line and "gptq-int4" in line for line in rec.reasons)

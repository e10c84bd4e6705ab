"""Advice for the deployment target (`--plan-for`): each number says where it comes from (no measuring here)."""

import pytest

from qadvisor.app.advice import readvise
from qadvisor.app.report import markdown
from qadvisor.app.views import target_view
from qadvisor.core import architectures
from qadvisor.core.plan import planner
from qadvisor.core.plan.projection import project
from qadvisor.core.plan.slices import attach
from qadvisor.schemas.priorities import load_profile
from tests.samples import result, sample_export
from tests.unit.test_projection import _result

GIB = 2**30


def _export_with_plan(target: str = "this", ram_gib: float = 100, disk_read_gb_s: float | None = 1.5):
    """A proxy run where gguf-q8_0 decodes fastest, and a 72B plan in which gguf-q4_k_m projects faster."""
    export = sample_export()
    export.results = [result("fp32", 60, 90.0, 0.0, 0.0), result("gguf-q8_0", 16, 1500.0, 5e-5, 0.0),
                      result("gguf-q4_k_m", 12, 1450.0, 2e-4, 0.1), result("hqq-int4", 13, 100.0, 1e-3, 0.3)]
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    where = planner.parse_target(target, ram_available=ram_gib * GIB, probe=lambda: 30.0)
    estimate = planner.plan(arch, where, methods=["gguf-q8_0", "gguf-q4_k_m", "hqq-int4"])
    projections = {"gguf-q8_0": project([_result(120, 2000), _result(150, 4000)], (1, 2), 80, 128),
                   "gguf-q4_k_m": project([_result(80, 1500), _result(100, 3000)], (1, 2), 80, 128)}
    export.plan = attach(estimate, projections, disk_read_gb_s=disk_read_gb_s)
    return export


def test_target_advice_takes_size_from_the_planner_speed_from_slices_accuracy_published_at_its_size():
    export = readvise(_export_with_plan(), load_profile("latency-first"), with_target=True)
    t = export.target
    rows = {r.method: r for r in t.results}
    plans = {p.method: p for p in export.plan.plans}
    assert set(rows) == {"gguf-q8_0", "gguf-q4_k_m"}
    q4 = rows["gguf-q4_k_m"]
    assert q4.size_bytes == plans["gguf-q4_k_m"].weights_bytes  # the planner's estimate, not the proxy's file
    assert q4.decode_tok_s == pytest.approx(1000 / (60 + 80 * 20))  # fixed 60 ms + 80 layers × 20 ms
    # Qwen's own Qwen2-72B-Instruct GGUF: wikitext PPL 5.58 → 5.61, not the proxy's KL of 2e-4
    assert q4.accuracy_basis == "published" and q4.ppl_delta_pct == pytest.approx(100 * (5.61 / 5.58 - 1))
    assert q4.kl_mean is None and "Qwen2-72B-Instruct Q4_K_M: wikitext PPL 5.58 → 5.61" in q4.reason
    assert "estimate (planner)" in q4.reason and "projected from 1- and 2-layer slices" in q4.reason
    assert "hqq-int4" in t.left_out and "not measured on slices" in t.left_out["hqq-int4"]
    assert "target methods" in t.left_out["fp32"]  # the planner knows fp32; this plan did not time it
    assert t.recommendation.method == "gguf-q4_k_m" and export.recommendation.method == "gguf-q8_0"
    assert "the pick differs" in t.comparison[0] and "decodes" in t.comparison[0]
    assert t.published and t.published["model"].endswith("72B-Instruct")


def test_gguf_too_big_for_ram_is_ranked_by_its_speed_from_disk_not_the_in_memory_projection():
    export = readvise(_export_with_plan(ram_gib=20), load_profile("latency-first"), with_target=True)
    rows = {r.method: r for r in export.target.results}
    plans = {p.method: p for p in export.plan.plans}
    for method in ("gguf-q8_0", "gguf-q4_k_m"):
        assert not plans[method].fits and plans[method].projection is not None
        assert rows[method].decode_tok_s == pytest.approx(1.5e9 / plans[method].weights_bytes)  # the disk read
        assert rows[method].decode_tok_s < plans[method].projection.decode_tok_s
        assert rows[method].decode_kind == "estimate" and "from disk each token at the 1.50 GB/s" in rows[method].reason
    assert any(line.startswith("decodes about ") and "(estimate)" in line
               for line in export.target.recommendation.reasons)
    no_disk = _export_with_plan(ram_gib=20, disk_read_gb_s=None)
    t = readvise(no_disk, load_profile("latency-first"), with_target=True).target
    assert "gguf-q4_k_m" not in {r.method for r in t.results}
    assert "read rate" in t.left_out["gguf-q4_k_m"]


def test_a_gpu_target_uses_the_bandwidth_bound_and_says_so():
    export = readvise(_export_with_plan("A100-80GB"), load_profile("balanced"), with_target=True)
    row = export.target.results[0]
    assert row.decode_tok_s == next(p.decode_tok_s_bound for p in export.plan.plans if p.method == row.method)
    assert "estimate: bandwidth bound on A100-80GB" in row.reason
    assert row.decode_kind == "bound" and row.decode_tok_s_spread is None  # an upper limit, not a measurement
    assert any(r.startswith("decodes at most ") for r in export.target.recommendation.reasons)
    view = target_view(export)
    assert "decode tok/s ≤" in view.columns and "upper limit" in view.title and "±" not in str(view.rows)


def test_a_target_of_several_gpus_is_named_with_its_count():
    export = readvise(_export_with_plan("H100-80GBx2"), load_profile("balanced"), with_target=True)
    assert export.target.target == "H100-80GB ×2"
    assert "bandwidth bound on H100-80GB ×2" in export.target.results[0].reason


def test_every_face_renders_the_same_target_view():
    export = readvise(_export_with_plan(), load_profile("latency-first"), with_target=True)
    view = target_view(export)
    assert view.headline.startswith("Recommendation for Qwen2.5-72B: Tool")
    assert view.columns[0] == "method" and len(view.rows) == 2
    report = markdown(export)
    assert view.headline in report and "decode projected from slices measured here" in view.title
    assert "not in the Qwen2.5-72B advice: hqq-int4" in report and "published by Qwen" in report


def test_a_gpu_target_shows_qwens_published_a100_speeds_beside_the_bounds():
    from qadvisor.app.views import published_speed_lines

    export = sample_export()
    export.results = [result("fp32", 60, 90.0, 0.0, 0.0), result("gptq-int4", 12, 80.0, 3e-4, 0.1)]
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    where = planner.parse_target("A100-80GB")
    export.plan = attach(planner.plan(arch, where, methods=["gptq-int4"]), {}, disk_read_gb_s=None)
    export = readvise(export, load_profile("balanced"), with_target=True)
    bound = export.target.results[0].decode_tok_s
    lines = published_speed_lines(export)
    assert "gptq-int4 11.07" in lines[0] and "vLLM" in lines[0] and "bf16 8.73 (2 GPUs)" in lines[0]
    assert lines[1] == (f"against the bound on one A100: gptq-int4 transformers {11.07 / bound:.0%} of {bound:.1f}, "
                        f"gptq-int4 vLLM {16.47 / bound:.0%} of {bound:.1f}")
    assert "not measured by qadvisor" in lines[2] and "speed_benchmark.rst" in lines[2]
    assert readvise(_export_with_plan(), load_profile("balanced"), with_target=True).target.published_speed is None


def test_a_capped_projection_is_named_the_bound_in_the_target_advice():
    export = _export_with_plan()
    plans = [p.model_copy(update={"projection": p.projection.model_copy(update={"capped_at_bound": True})})
             if p.projection else p for p in export.plan.plans]
    export.plan = export.plan.model_copy(update={"plans": plans})
    t = readvise(export, load_profile("balanced"), with_target=True).target
    assert all("the bandwidth bound here: the projection from 1- and 2-layer slices exceeded it" in r.reason
               for r in t.results)


def test_a_projection_above_the_bound_keeps_its_figure_and_says_it_is_uncertain():
    export = _export_with_plan()
    plans = [p.model_copy(update={"projection": p.projection.model_copy(update={"above_bound": 0.2})})
             if p.projection else p for p in export.plan.plans]
    export.plan = export.plan.model_copy(update={"plans": plans})
    t = readvise(export, load_profile("balanced"), with_target=True).target
    projected = {p.method: p.projection.decode_tok_s for p in plans if p.projection}
    assert all(r.decode_tok_s == projected[r.method] for r in t.results)
    assert all("above this machine's bandwidth bound of 0.2 tok/s" in r.reason for r in t.results)


def _storage_first_72b(methods, accept=False, streamed=None, full=False, ram_gib=60):
    """A 72B plan for `methods` (each projected alike) advised for a storage-bound team, on a machine whose RAM
    holds every 4-bit form of it (`ram_gib`)."""
    export = sample_export()
    proxies = {"gguf-q8_0": result("gguf-q8_0", 16, 1500.0, 5e-5, 0.0), "gguf-q2_k": result("gguf-q2_k", 9, 1400.0,
               8e-3, -0.4), "bnb-nf4": result("bnb-nf4", 10, 50.0, 1e-3, 0.2), "hqq-int4": result("hqq-int4", 11,
               40.0, 1e-3, 0.3), "bnb-nf4+kv-int4": result("bnb-nf4+kv-int4", 10, 45.0, 1.2e-3, 0.25)}
    export.results = [result("fp32", 60, 90.0, 0.0, 0.0)] + [proxies[m] for m in methods]
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    where = planner.parse_target("this", ram_available=ram_gib * GIB, probe=lambda: 30.0)
    projections = {m: project([_result(80, 1500), _result(100, 3000)], (1, 2), 80, 128) for m in methods
                   if "+" not in m}  # slices time a KV stack by its weights (core.plan.slices.attach)
    export.plan = attach(planner.plan(arch, where, methods=methods), projections, disk_read_gb_s=1.5)
    export.streamed = streamed
    priorities = load_profile("storage-first").model_copy(update={"accept_unverified_accuracy": accept})
    advised = readvise(export, priorities, with_target=True)
    return advised if full else advised.target


def test_a_kv_stack_at_the_target_shows_its_cache_and_what_its_speed_leaves_out():
    export = _storage_first_72b(["bnb-nf4", "bnb-nf4+kv-int4"], accept=True, full=True)
    alone, stacked = export.target.results
    assert stacked.kv_cache_bytes < alone.kv_cache_bytes / 3 and stacked.decode_tok_s == alone.decode_tok_s
    assert "of bnb-nf4 alone, the KV cache's own time not in it" in stacked.device
    view = target_view(export)
    assert view.columns[-1] == "KV GiB" and [r[-1] for r in view.rows] == ["0.62", "0.18"]
    assert any(n.startswith("KV GiB: the cache at context 2048, estimated by the planner") for n in view.notes)


def test_the_target_pick_rests_on_evidence_at_its_size_and_names_what_it_left_out():
    t = _storage_first_72b(["gguf-q8_0", "gguf-q2_k", "bnb-nf4"])
    basis = {r.method: r.accuracy_basis for r in t.results}
    assert basis == {"gguf-q8_0": "published", "gguf-q2_k": "published", "bnb-nf4": "proxy"}
    assert t.recommendation.method == "gguf-q2_k"  # the smallest with evidence: +5.9 % PPL at 72B, under the limit
    assert any("published at this size: perplexity +5.9% vs fp16" in r for r in t.recommendation.reasons)
    assert "bnb-nf4: not recommended for Qwen2.5-72B" in t.accuracy_note
    view = target_view(readvise(sample_export(), load_profile("balanced")).model_copy(update={"target": t}))
    assert view.columns[-1] == "accuracy" and [r[-1] for r in view.rows] == ["published", "published", "proxy"]
    assert t.accuracy_note in view.lines and sum("llama-perplexity" in n for n in view.notes) == 1  # one source line
    assert "gguf-q2_k accuracy: Qwen2-72B-Instruct Q2_K: wikitext PPL 5.58 → 5.91" in view.notes


def test_no_method_with_evidence_at_the_targets_size_means_no_recommendation_unless_accepted():
    t = _storage_first_72b(["bnb-nf4", "hqq-int4"])
    assert t.recommendation is None and "none is recommended" in t.accuracy_note
    assert "accept unverified accuracy" in t.accuracy_note
    accepted = _storage_first_72b(["bnb-nf4", "hqq-int4"], accept=True)
    assert accepted.recommendation.method in ("bnb-nf4", "hqq-int4")
    assert any("the proxy's, not known at this size" in r for r in accepted.recommendation.reasons)
    assert "picked among the others on the accuracy of the small model" in accepted.accuracy_note


def _streamed(**losses):
    from qadvisor.schemas.export import StreamedAccuracy, StreamedMethod

    return StreamedAccuracy(model="Qwen2.5-72B", path="/models/qwen72b", ref_ppl=5.0, tokens=510, layers=80,
                            ref_seconds_per_layer=9.0, peak_rss_bytes=5 * GIB, not_streamed={"gptq-int4": "whole only"},
                            methods=[StreamedMethod(method=m, ppl=5.0 * (1 + d / 100), ppl_delta_pct=d, kl_mean=d / 50,
                                                    top1_agreement=0.9, seconds_per_layer=20.0)
                                     for m, d in losses.items()])


def test_the_targets_own_weights_streamed_come_before_published_figures_and_limits_apply_to_them():
    streamed = _streamed(**{"gguf-q8_0": 0.1, "gguf-q2_k": 30.0, "bnb-nf4": 0.8})
    t = _storage_first_72b(["gguf-q8_0", "gguf-q2_k", "bnb-nf4"], streamed=streamed)
    rows = {r.method: r for r in t.results}
    assert {r.accuracy_basis for r in t.results} == {"streamed"} and not t.accuracy_note
    assert rows["gguf-q2_k"].ppl_delta_pct == 30.0 and rows["gguf-q2_k"].kl_mean == pytest.approx(0.6)
    assert "streamed on Qwen2.5-72B's own weights, layer by layer, over 510 tokens" in rows["bnb-nf4"].reason
    # storage-first allows a PPL rise of 25 % at most: the model's own +30 % at 2 bits rules Q2_K out, where the
    # published +5.9 % let it through
    assert t.recommendation.method == "bnb-nf4"
    export = _storage_first_72b(["gguf-q8_0", "gguf-q2_k", "bnb-nf4"], streamed=streamed, full=True)
    view = target_view(export)
    assert "accuracy streamed on its own weights" in view.title
    assert any(n.startswith("accuracy streamed on /models/qwen72b: 80 layers one at a time over 510 tokens")
               and "peak memory 5.0 GiB" in n for n in view.notes)
    assert "gptq-int4: not streamed: whole only" in view.notes
    # GGUF streamed is llama.cpp's CPU rounding emulated in torch, and says so; bnb's is its own library's
    assert "emulating llama.cpp's CPU path in torch" in rows["gguf-q8_0"].reason
    assert "emulating" not in rows["bnb-nf4"].reason
    assert any(n.startswith("gguf-q8_0, gguf-q2_k: streamed by emulating llama.cpp") for n in view.notes)


def test_a_method_streaming_could_not_measure_falls_back_to_published_evidence():
    t = _storage_first_72b(["gguf-q8_0", "bnb-nf4"], streamed=_streamed(**{"bnb-nf4": 0.5}))
    assert {r.method: r.accuracy_basis for r in t.results} == {"gguf-q8_0": "published", "bnb-nf4": "streamed"}


def test_a_target_that_is_the_measured_model_keeps_its_measured_accuracy():
    export = _export_with_plan()
    export.plan = export.plan.model_copy(update={"model": export.model.name})
    t = readvise(export, load_profile("balanced"), with_target=True).target
    assert {r.accuracy_basis for r in t.results} == {"measured"} and t.recommendation is not None
    assert not t.accuracy_note


def test_a_synthetic_targets_streamed_loss_says_its_weights_are_random():
    streamed = _streamed(**{"gguf-q8_0": 0.1}).model_copy(update={"random_weights": True})
    t = _storage_first_72b(["gguf-q8_0"], streamed=streamed)
    assert t.results[0].accuracy_basis == "streamed"
    assert "random weights: a synthetic checkpoint, so the loss says nothing of a trained model" in t.results[0].reason


def test_the_console_the_report_and_the_tui_lay_out_one_run_page_in_one_order(capsys):
    """app.page composes the run page once: each face shows its sections in the page's order, and leaves out by key
    only what it shows elsewhere."""
    from qadvisor.app.page import ORDER, run_page
    from qadvisor.console import RUN_SECTIONS, print_run
    from qadvisor.tui.screens import ADVICE_SECTIONS

    export = _export_with_plan()
    export.plan_check = []
    readvise(export, load_profile("balanced"), with_target=True)
    page = run_page(export)[0][1]
    keys = [s.key for s in page]
    assert keys == [k for k in ORDER if k in keys] and {"results", "advice", "plan", "target"} <= set(keys)
    assert set(ORDER) - set(RUN_SECTIONS) == {"hardware"} and set(ORDER) - set(ADVICE_SECTIONS) == {"hardware", "results"}

    report = markdown(export)
    headings = [line[3:] for line in report.splitlines() if line.startswith("## ")]
    assert headings == [s.heading for s in page]

    print_run(export)
    out = capsys.readouterr().out
    by_key = {s.key: s for s in page}
    starts = [export.model.name + " on", "Recommendation: ", by_key["plan"].brief[:40], by_key["target"].view.title[:40]]
    marks = [out.index(text) for text in starts]  # the plan as its one summary line, between the advice and the target
    assert marks == sorted(marks)


def test_a_method_the_target_cannot_hold_is_never_its_pick():
    """On a GPU target, a method over the GPUs asked for is ruled out, as a limit would; on this machine, a backend
    that loads every weight is ruled out when they exceed the RAM, while llama.cpp reads a GGUF file from disk."""
    export = _export_with_plan("A100-80GB")
    t = readvise(export, load_profile("balanced"), with_target=True).target
    fits = {r.method: r.fits for r in export.plan.plans}
    assert not fits["gguf-q8_0"] and t.recommendation.method != "gguf-q8_0"
    assert t.recommendation.ruled_out["gguf-q8_0"] == ["does not fit A100-80GB (needs 2 GPUs)"]

    small = _storage_first_72b(["gguf-q8_0", "gguf-q2_k", "bnb-nf4"], accept=True, ram_gib=20)
    assert small.recommendation.ruled_out["bnb-nf4"] == ["does not fit in this machine's RAM"]
    assert "gguf-q8_0" not in small.recommendation.ruled_out  # 77 GiB over 20: read from disk, not ruled out


def _gpu_72b(profile, methods=("gptq-int4", "awq-int4", "gguf-q4_k_m", "bnb-nf4"), **limits):
    """Qwen's own kinds of release and two others measured on the proxy, advised for a 72B on one A100."""
    export = sample_export()
    export.results = [result("fp32", 60, 90.0, 0.0, 0.0)] + [result(m, 12, 100.0, 1e-3, 0.1) for m in methods]
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    where = planner.parse_target("A100-80GB", ram_available=20 * GIB, probe=lambda: 30.0)
    export.plan = attach(planner.plan(arch, where, methods=list(methods)), {}, disk_read_gb_s=1.5)
    priorities = load_profile(profile)
    priorities = priorities.model_copy(update={"limits": priorities.limits.model_copy(update=limits)})
    return readvise(export, priorities, with_target=True)


def test_qwens_gptq_and_awq_releases_are_judged_on_its_published_benchmark_scores():
    export = _gpu_72b("latency-first")
    t = export.target
    rows = {r.method: r for r in t.results}
    assert {m: r.accuracy_basis for m, r in rows.items()} == {"gptq-int4": "published", "awq-int4": "published",
                                                              "gguf-q4_k_m": "published", "bnb-nf4": "proxy"}
    int4 = rows["gptq-int4"]
    assert int4.ppl_delta_pct is None and int4.score_delta_pct == pytest.approx(100 * (81.2 / 81.3 - 1))
    assert "benchmark average (MMLU, C-Eval, IFEval) 81.3 → 81.2" in int4.reason
    assert t.accuracy_note.startswith("bnb-nf4: not recommended")  # the only one without evidence
    # 4-bit without llama.cpp's K-quant mix reads fewer bytes per token: the fastest bound, with a loss that is small
    assert t.recommendation.method in ("gptq-int4", "awq-int4")
    reasons = " ".join(t.recommendation.reasons)
    assert "published at this size: benchmark average" in reasons
    assert "max_ppl_rise_pct against its benchmark-average drop, no perplexity known" in reasons
    assert "the perplexity rise of gguf-q4_k_m and the benchmark-average drop of awq-int4, gptq-int4" in reasons
    view = target_view(export)
    score = view.columns.index("Δscore")
    assert view.rows[0][score] == "-0.1%" and view.rows[2][score] == "—"
    assert any(n.startswith("Δscore: the change of a benchmark average Qwen published") for n in view.notes)
    assert "gptq-int4 accuracy: Qwen2-72B-Instruct GPTQ-Int4: benchmark average (MMLU, C-Eval, IFEval) 81.3 → 81.2" \
        in view.notes


def test_limits_hold_a_benchmark_drop_as_the_loss_and_rule_out_what_it_cannot_check():
    strict = _gpu_72b("latency-first", max_ppl_rise_pct=0.5).target.recommendation
    assert strict.ruled_out["awq-int4"] == ["benchmark-average drop +1.1% > max +0.5%"]  # 81.3 → 80.4
    assert "gptq-int4" not in strict.ruled_out  # 81.3 → 81.2: within
    no_kl = _gpu_72b("latency-first", max_kl=0.01).target.recommendation
    assert no_kl.ruled_out["gptq-int4"] == ["KL not known (the evidence at this size has none)"]
    assert no_kl.ruled_out["gguf-q4_k_m"] == ["KL not known (the evidence at this size has none)"]



def test_a_projection_timed_on_a_busy_machine_is_marked_at_the_target_and_keeps_no_proxy_history():
    """The slices' contention travels to the target's row (⚠ in its table, the advice's noise); the proxy's own
    decode history is the proxy's, never the planned model's."""
    from qadvisor.app.views import target_view

    export = _export_with_plan()
    export.results = [r.model_copy(update={"decode_earlier": [10.0, 11.0]}) for r in export.results]
    plans = [p.model_copy(update={"projection": p.projection.model_copy(update={"cpu_contention": 0.9})})
             if p.method == "gguf-q4_k_m" else p for p in export.plan.plans]
    export.plan = export.plan.model_copy(update={"plans": plans})
    export = readvise(export, load_profile("latency-first"), with_target=True)
    rows = {r.method: r for r in export.target.results}
    assert rows["gguf-q4_k_m"].cpu_contention == 0.9 and rows["gguf-q8_0"].cpu_contention is None
    assert all(r.decode_earlier == [] for r in rows.values())
    cells = {row[0]: row[3] for row in target_view(export).rows}
    assert cells["gguf-q4_k_m"].endswith(" ⚠") and not cells["gguf-q8_0"].endswith(" ⚠")


def test_a_projection_with_no_upper_end_is_ranked_with_the_bandwidth_bound_as_its_top_and_says_so():
    export = _export_with_plan()
    plans = [p.model_copy(update={"projection": p.projection.model_copy(update={
        "decode_tok_s_range": (p.projection.decode_tok_s * 0.5, None)})}) if p.method == "gguf-q4_k_m" else p
        for p in export.plan.plans]
    export.plan = export.plan.model_copy(update={"plans": plans})
    export = readvise(export, load_profile("latency-first"), with_target=True)
    row = next(r for r in export.target.results if r.method == "gguf-q4_k_m")
    bound = next(p for p in plans if p.method == "gguf-q4_k_m").decode_tok_s_bound
    assert row.decode_tok_s_spread == pytest.approx(max(bound, row.decode_tok_s) - row.decode_tok_s * 0.5)
    assert "no upper end from the slices" in row.device
    cells = {r[0]: r[3] for r in target_view(export).rows}
    assert cells["gguf-q4_k_m"] == "0.60 ±0.16"  # 0.30 up to the bound of 0.63

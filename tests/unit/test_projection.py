"""Slices of a planned model and the projection from two depths to the whole model (no measuring here)."""

import json

import pytest

from qadvisor.core import architectures
from qadvisor.core.measure import synthetic
from qadvisor.core.measure.modelio import synthetic_reference
from qadvisor.core.plan import planner
from qadvisor.core.plan.projection import fit_line, project
from qadvisor.core.plan.slices import attach, check_methods, need_bytes, slice_architecture, slice_depths
from qadvisor.errors import UserError
from qadvisor.schemas.result import TrialResult

GIB = 2**30


def _result(decode_ms: float, prefill_ms: float, prompt: int = 128, spread: float = 0.0) -> TrialResult:
    decode = 1000 / decode_ms
    return TrialResult(method="m", backend="b", bits=4, status="ok", device="cpu: test",
                       decode_tok_s=decode, decode_tok_s_spread=spread * decode,
                       prefill_tok_s=prompt * 1000 / prefill_ms, prefill_tok_s_spread=0.0)


def test_fit_line_recovers_fixed_and_per_layer():
    assert fit_line(1, 30.0, 4, 60.0) == pytest.approx((20.0, 10.0))


def test_projection_is_fixed_plus_layers_times_per_layer():
    # 20 ms fixed + 10 ms a layer per token; 100 ms fixed + 50 ms a layer per 128-token prompt
    p = project([_result(30, 150), _result(60, 300)], (1, 4), 80, 128)
    assert p.decode_fixed_ms == pytest.approx(20) and p.decode_per_layer_ms == pytest.approx(10)
    assert p.decode_tok_s == pytest.approx(1000 / (20 + 80 * 10))
    assert p.prefill_tok_s == pytest.approx(128 * 1000 / (100 + 80 * 50))
    assert p.layers_measured == [1, 4] and p.label == "projected" and "slices of 1 and 4" in p.basis


def test_a_layer_mix_heavier_than_the_slices_layer_scales_decode_per_layer_only():
    """72B Q4_K_M: half its layers carry Q6_K (as Q8_0) ffn_down and attn_v, the layer a 1→2 slice adds does not."""
    from qadvisor.quantizers import gguf_mix

    arch = architectures.resolve_architecture("Qwen2.5-72B")
    ratio = gguf_mix.layer_ratio("gguf-q4_k_m", arch, (1, 2))
    assert ratio == pytest.approx(1.09, abs=0.005)
    assert gguf_mix.layer_ratio("gguf-q8_0", arch, (1, 2)) == 1.0
    p = project([_result(30, 150), _result(60, 300)], (1, 4), 80, 128, layer_bytes_ratio=ratio)
    assert p.decode_fixed_ms == pytest.approx(20) and p.decode_per_layer_ms == pytest.approx(10 * ratio)
    assert p.decode_tok_s == pytest.approx(1000 / (20 + 80 * 10 * ratio))
    assert p.prefill_tok_s == pytest.approx(128 * 1000 / (100 + 80 * 50))  # compute, not bytes: as measured
    low, high = p.decode_tok_s_range
    assert low <= p.decode_tok_s <= high and "× 1.090" in p.basis and "+9.0%" in p.basis
    assert "per-layer time ×" not in project([_result(30, 150), _result(60, 300)], (1, 4), 80, 128,
                                             layer_bytes_ratio=1.003).basis


def test_the_72b_mixes_give_the_layers_llama_cpp_gives_them():
    from qadvisor.quantizers import gguf_mix

    arch = architectures.resolve_architecture("Qwen2.5-72B")
    heavy = [i for i in range(80) if gguf_mix.linear_type("gguf-q4_k_m", "down_proj", i, 80, arch) == "Q6_K"]
    assert len(heavy) == 40 and heavy[:12] == list(range(10)) + [12, 15] and heavy[-10:] == list(range(70, 80))
    assert gguf_mix.stored_type("Q6_K", arch.intermediate_size) == "Q8_0"  # 29,568 inputs: no 256-blocks
    assert gguf_mix.stored_type("Q4_K", arch.intermediate_size) == "Q5_0"
    assert gguf_mix.linear_type("gguf-q4_k_m", "v_proj", 11, 80, arch) == "Q5_K"  # the "70B" step
    assert gguf_mix.linear_type("gguf-q4_k_m", "v_proj", 0, 2, arch) == "Q4_K"  # a 2-layer slice: no step
    held, _ = planner.weights_bytes(arch, planner.formats()["gguf-q4_k_m"])
    assert held / GIB == pytest.approx(44.15, abs=0.01)


def test_projection_range_widens_with_the_repeats_spread():
    steady = project([_result(30, 150), _result(60, 300)], (1, 4), 80, 128)
    noisy = project([_result(30, 150, spread=0.1), _result(60, 300, spread=0.1)], (1, 4), 80, 128)
    low, high = noisy.decode_tok_s_range
    assert low < noisy.decode_tok_s < high
    assert steady.decode_tok_s_range[1] - steady.decode_tok_s_range[0] < high - low


def test_a_deeper_slice_that_is_not_slower_gives_no_projection():
    p = project([_result(30, 150), _result(29, 300)], (1, 2), 80, 128)
    assert p.decode_tok_s is None and "not separable" in p.basis


def test_slice_ties_the_table_and_keeps_the_layer_shape():
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    s = slice_architecture(arch, 2)
    assert (s.num_hidden_layers, s.tie_word_embeddings, s.hidden_size, s.intermediate_size) == (2, True, 8192, 29568)
    assert s.vocab_size == arch.vocab_size and s.num_key_value_heads == arch.num_key_value_heads


@pytest.mark.parametrize("name, ram_gib, depths", [
    ("Qwen2.5-72B", 23, (1, 2)), ("Qwen2.5-0.5B", 23, (6, 12)), ("Qwen2.5-1.5B", 23, (7, 14)), ("Qwen2.5-7B", 23, (4, 8)),
    ("Qwen2.5-7B", 10, (3, 6)),
])
def test_slice_depths_are_as_far_apart_as_time_and_memory_allow(name, ram_gib, depths):
    arch = architectures.resolve_architecture(name)
    assert slice_depths(arch, ram_gib * GIB) == depths
    assert need_bytes(slice_architecture(arch, depths[1])) <= ram_gib * GIB


def test_a_machine_too_small_for_two_layers_is_refused():
    with pytest.raises(UserError, match="2-layer slice of Qwen2.5-72B needs about"):
        slice_depths(architectures.resolve_architecture("Qwen2.5-72B"), 8 * GIB)


@pytest.mark.parametrize("method, why", [
    ("bnb-nf4+hqq-int4", "cannot stack"), ("nope", "unknown"),
])
def test_methods_slices_cannot_time_are_refused_up_front(method, why):
    with pytest.raises(UserError, match=why):
        check_methods([method], has_cuda=False)
    check_methods(["fp32"], has_cuda=False)  # every runnable method has a planner entry, the reference too


def test_a_kv_stack_takes_its_weights_projection_and_says_what_is_not_in_it():
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    target = planner.parse_target("this", ram_available=200 * GIB, probe=lambda: 10.0)
    estimate = planner.plan(arch, target, methods=["bnb-nf4", "bnb-nf4+kv-int4"])
    p = project([_result(300, 3000), _result(500, 5000)], (1, 2), 80, 128)
    alone, stacked = attach(estimate, {"bnb-nf4": p}, disk_read_gb_s=None).plans
    assert stacked.projection.decode_tok_s == alone.projection.decode_tok_s
    assert "slices timed bnb-nf4 alone" in stacked.projection.basis and "kv-int4" in stacked.projection.basis


def test_gguf_that_does_not_fit_gets_a_streamed_speed():
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    target = planner.parse_target("this", ram_available=20 * GIB, probe=lambda: 10.0)
    estimate = planner.plan(arch, target, methods=["gguf-q4_k_m", "bnb-nf4"])
    p = project([_result(300, 3000), _result(500, 5000)], (1, 2), 80, 128)
    plan = attach(estimate, {"gguf-q4_k_m": p}, disk_read_gb_s=1.0)
    gguf, nf4 = plan.plans
    assert not gguf.fits and gguf.streamed_decode_tok_s == pytest.approx(1e9 / gguf.weights_bytes)
    assert gguf.projected_decode_tok_s == pytest.approx(1000 / (100 + 80 * 200))
    assert gguf.bound_fraction == pytest.approx(gguf.projected_decode_tok_s / gguf.decode_tok_s_bound)
    assert nf4.projection is None and nf4.projected_decode_tok_s is None and nf4.streamed_decode_tok_s is None
    assert plan.disk_read_gb_s == 1.0


def test_a_projection_faster_than_the_bandwidth_bound_is_shown_beside_it_not_replaced():
    """Measured: gptq-int4 on 1 and 2 layers of the 72B differed by 16 ms a token, less than reading the layer's
    0.47 GB takes at the 24.5 GB/s one thread copied; the projection came out at 106 % of that bound."""
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    target = planner.parse_target("this", ram_available=20 * GIB, probe=lambda: 24.5)
    estimate = planner.plan(arch, target, methods=["gptq-int4"])
    bound = estimate.plans[0].decode_tok_s_bound
    p = project([_result(229.6, 3000), _result(245.9, 5000)], (1, 2), 80, 128)
    assert p.decode_tok_s > bound
    row = attach(estimate, {"gptq-int4": p}, disk_read_gb_s=None).plans[0]
    assert row.projected_decode_tok_s == row.projection.decode_tok_s == p.decode_tok_s  # the measurement stands
    assert row.projection.above_bound == bound and row.bound_fraction == pytest.approx(p.decode_tok_s / bound)
    assert "above the bandwidth bound" in row.projection.basis and "both are shown" in row.projection.basis
    assert not row.projection.capped_at_bound


def test_the_bandwidth_bound_is_measured_on_the_trials_threads_and_says_so():
    target = planner.parse_target("this", ram_available=20 * GIB, probe=lambda: 24.5, threads=3)
    assert target.bandwidth_source == "measured: 256 MiB copy on 3 threads, as the trials run"


def test_random_checkpoint_is_written_shard_by_shard_at_the_planned_size(tmp_path):
    from tests.conftest import BUNDLED

    arch = planner.Architecture(name="tiny", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, vocab_size=8192, tie_word_embeddings=True)
    out = synthetic.build(arch, tmp_path / "tiny", BUNDLED, {"need_bytes": 123})
    assert len(list(out.glob("*.safetensors"))) == 3  # the table, then one shard a layer
    assert synthetic.marker(out)["need_bytes"] == 123
    ref = synthetic_reference(out)
    assert ref.params == architectures.param_count(arch) and ref.ref_ppl is None
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))  # transformers reads it like any checkpoint
    assert sum(p.numel() for p in model.parameters()) == ref.params


def test_a_shallow_slice_links_the_deep_slices_shards_and_equals_a_fresh_build(tmp_path):
    from tests.conftest import BUNDLED

    arch = architectures.resolve_architecture(str(BUNDLED))
    deep = synthetic.build(slice_architecture(arch, 3), tmp_path / "deep", BUNDLED, {})
    linked = synthetic.build(slice_architecture(arch, 1), tmp_path / "linked", BUNDLED, {}, reuse=deep)
    fresh = synthetic.build(slice_architecture(arch, 1), tmp_path / "fresh", BUNDLED, {})
    for shard in ("model-table.safetensors", "model-layer-00000.safetensors"):
        assert (linked / shard).stat().st_ino == (deep / shard).stat().st_ino  # a link, not a copy
        assert (linked / shard).read_bytes() == (fresh / shard).read_bytes()
    assert not (linked / "model-layer-00001.safetensors").exists()
    assert synthetic_reference(linked).params == architectures.param_count(slice_architecture(arch, 1))


def test_the_projection_table_names_what_each_method_adds_to_the_shared_basis():
    from qadvisor.app.plan_views import _shared_basis

    scaled = project([_result(30, 150), _result(60, 300)], (1, 2), 80, 128, layer_bytes_ratio=1.09).basis
    plain = project([_result(30, 150), _result(60, 300)], (1, 2), 80, 128).basis
    common, own = _shared_basis([("gguf-q8_0", plain), ("gguf-q4_k_m", scaled)])
    assert common == plain and own == [("gguf-q4_k_m", scaled[len(plain) + 2:])]
    assert own[0][1].startswith("decode's per-layer time × 1.090")


def test_slices_on_a_slow_machine_carry_it_and_a_range_wider_than_its_figure_is_called_unreliable(capsys):
    """The 72B's gguf-q2_k once projected 71.9 ±418.6 on a busy machine: the range is shown, never around the
    figure, and the slices' busy and slow timings are named."""
    from qadvisor import format as f
    from qadvisor.app.plan_views import projection_view
    from qadvisor.console import print_view

    slow = [_result(20, 1500, spread=0.05).model_copy(update={"cpu_contention": 0.0, "pace_ratio": r})
            for r in (1.05, 1.45)]
    p = project(slow, (1, 2), 80, 128)
    assert p.pace_ratio == 1.45 and p.cpu_contention == 0.0  # the slower of the two depths' timings
    noisy = project([_result(20, 1500, spread=0.9), _result(20.5, 3000, spread=0.9)], (1, 2), 80, 128)
    assert f.unreliable(noisy.decode_tok_s, noisy.decode_tok_s_range)
    assert noisy.decode_tok_s_range[1] is None  # 2 layers to 80: the repeats' spread allows any speed
    arch = architectures.resolve_architecture("Qwen2.5-72B")
    target = planner.parse_target("this", ram_available=200 * GIB, probe=lambda: 200.0)
    plan = attach(planner.plan(arch, target, methods=["gguf-q8_0", "gguf-q2_k"]),
                  {"gguf-q8_0": p, "gguf-q2_k": noisy}, disk_read_gb_s=None)
    print_view(projection_view(plan))
    out = capsys.readouterr().out
    assert "gguf-q8_0 (1.45× slower than at the start)" in out
    assert "unreliable: gguf-q2_k: the projected range is wider than the figure or has no upper end" in out
    assert "≥ 0.54" in out  # the range as far as it goes


def test_a_projection_lies_within_its_own_range_and_a_range_may_have_no_upper_end():
    """Extrapolating from two noisy depths, a corner of the repeats' spread can reach a per-token time of zero or
    less: the range then has no upper end (unreliable), never a range that leaves out its own figure (0.62 tok/s
    shown with 0.486–0.501 once)."""
    import random

    from qadvisor import format as f
    from qadvisor.core.plan.projection import _project, _times

    rng = random.Random(1)
    for _ in range(20000):
        r1 = rng.uniform(0.1, 5)
        r2 = r1 * rng.uniform(0.3, 1.1)
        times = [_times(r1, r1 * rng.uniform(0, 1.5), 1.0), _times(r2, r2 * rng.uniform(0, 1.5), 1.0)]
        rate, span, _, _ = _project(rng.choice([(1, 2), (2, 4)]), times, rng.choice([24, 80]), 1.0,
                                    rng.choice([1.0, 1.05]))
        if rate is not None:
            assert span[0] <= rate * (1 + 1e-9) and (span[1] is None or rate <= span[1] * (1 + 1e-9))
    rate, span, _, _ = _project((1, 2), [_times(1.6118, 1.4864, 1.0), _times(1.5774, 1.368, 1.0)], 80, 1.0)
    assert rate == pytest.approx(0.5917, rel=1e-3) and span[1] is None and f.unreliable(rate, span)

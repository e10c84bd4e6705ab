"""The Qwen families after Qwen2.5 as data: named sizes, configs (nested or not), parameter counts, and the planner's
MoE and hybrid terms."""

import json

import pytest

from qadvisor.core import architectures
from qadvisor.core.plan import planner
from qadvisor.errors import UserError
from tests.conftest import run_cli

ARCHS = architectures.builtin_architectures()
H100 = planner.parse_target("H100-80GB")


@pytest.mark.parametrize("name, total, active", [
    # Qwen's model cards: total and activated parameters (the text model; Qwen3.5's cards count the vision tower too)
    ("Qwen3-0.6B", 0.6, 0.6), ("Qwen3-32B", 32.8, 32.8), ("Qwen3-30B-A3B", 30.5, 3.3),
    ("Qwen3-235B-A22B", 235, 22), ("Qwen3-Next-80B-A3B", 80, 3.9), ("Qwen3.5-397B-A17B", 397, 17),
])
def test_total_and_active_parameters_match_qwen(name, total, active):
    arch = ARCHS[name]
    assert architectures.param_count(arch) / 1e9 == pytest.approx(total, rel=0.05)
    assert architectures.active_param_count(arch) / 1e9 == pytest.approx(active, rel=0.05)


def _config(tmp_path, config: dict):
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


QWEN3_5_TEXT = {"model_type": "qwen3_5_text", "hidden_size": 1024, "intermediate_size": 3584, "num_hidden_layers": 24,
                "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256, "vocab_size": 248320,
                "linear_num_key_heads": 16, "linear_num_value_heads": 16, "linear_key_head_dim": 128,
                "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "full_attention_interval": 4,
                "mtp_num_hidden_layers": 1}


def test_an_image_text_config_is_read_by_its_text_part_and_its_vision_tower_counted(tmp_path):
    folder = _config(tmp_path, {"model_type": "qwen3_5", "tie_word_embeddings": True, "text_config": QWEN3_5_TEXT,
                                "vision_config": {"depth": 12, "hidden_size": 768, "intermediate_size": 3072,
                                                  "out_hidden_size": 1024}})
    arch = architectures.resolve_architecture(str(folder))
    assert arch.family == "qwen3_5" and arch.is_hybrid and arch.full_attention_layers() == 6
    assert architectures.param_count(arch) == architectures.param_count(ARCHS["Qwen3.5-0.8B"])
    extra = architectures.stored_extra_params(arch)
    assert set(extra) == {"1 MTP layer", "a vision tower"} and 80e6 < extra["a vision tower"] < 120e6


def test_layer_types_in_the_config_give_the_same_pattern(tmp_path):
    types = ["linear_attention"] * 3 + ["full_attention"]
    config = {**{k: v for k, v in QWEN3_5_TEXT.items() if k != "full_attention_interval"}, "layer_types": types * 6}
    arch = architectures.resolve_architecture(str(_config(tmp_path, config)))
    assert [arch.layer_type(i) for i in range(8)] == types * 2


@pytest.mark.parametrize("config, words", [
    ({"model_type": "llama", "hidden_size": 8}, "model_type .llama.; qadvisor knows qwen2 .Qwen2/Qwen2.5., qwen3"),
    ({"model_type": "qwen3_moe", "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
      "num_key_value_heads": 1, "vocab_size": 10, "moe_intermediate_size": 4}, "missing 'num_experts'"),
])
def test_a_config_qadvisor_cannot_read_is_one_line_naming_what(tmp_path, config, words):
    with pytest.raises(UserError, match=words):
        architectures.resolve_architecture(str(_config(tmp_path, config)))


def test_an_unknown_config_is_exit_2_before_anything_runs(tmp_path):
    proc = run_cli("plan", "--model", str(_config(tmp_path, {"model_type": "mamba"})))
    assert proc.returncode == 2 and "Qwen3-MoE" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_an_moe_token_reads_its_top_k_experts_and_memory_holds_them_all():
    arch = ARCHS["Qwen3-30B-A3B"]
    held, read = planner.weights_bytes(arch, planner.formats()["bf16"])
    assert held == pytest.approx(2 * architectures.param_count(arch), rel=0.001)
    one_row = arch.vocab_size * arch.hidden_size * 2  # the embedding table is not read per token, only one row
    assert read == pytest.approx(2 * architectures.active_param_count(arch) - one_row, rel=0.001)
    gptq = planner.plan(arch, H100, methods=["bf16", "gptq-int4"]).plans
    assert gptq[1].weights_bytes < 0.3 * gptq[0].weights_bytes  # every expert quantized, the router kept


def test_a_hybrid_model_caches_keys_in_its_full_attention_layers_only_and_keeps_a_fixed_state():
    arch = ARCHS["Qwen3.5-27B"]
    short, long = (planner.plan(arch, H100, context=c, methods=["bf16"]).plans[0] for c in (2048, 32768))
    assert short.kv_cache_bytes == 2 * 16 * 4 * 256 * 2048 * 2  # 16 of 64 layers, 4 kv heads of 256
    assert long.kv_cache_bytes == 16 * short.kv_cache_bytes
    recurrent = 48 * 128 * 128 * 4
    conv = (2 * 16 * 128 + 48 * 128) * 3 * 2
    assert short.state_bytes == long.state_bytes == 48 * (recurrent + conv)


def test_plan_shows_active_parameters_and_the_state():
    proc = run_cli("plan", "--model", "Qwen3.5-35B-A3B", "--target", "H100-80GB", "--methods", "bf16,gguf-q4_k_m")
    assert proc.returncode == 0, proc.stderr
    assert "3.45 B active per token" in proc.stdout and "1 MTP layer" in proc.stdout and "state" in proc.stdout


def test_a_method_that_would_leave_experts_in_bf16_is_refused_and_planned_as_such():
    from qadvisor.quantizers import registry

    refused = registry.families_refused(registry.methods()["bnb-nf4"])
    assert set(refused) == {"Qwen3-MoE", "Qwen3-Next (hybrid, MoE)", "Qwen3.5/3.6-MoE (hybrid)"}
    assert registry.families_refused(registry.methods()["gptq-int4"]) == {}
    assert "Qwen3.5/3.6 (hybrid)" in registry.families_refused(registry.methods()["kv-int4"])
    rows = planner.plan(ARCHS["Qwen3-30B-A3B"], H100, methods=["bf16", "bnb-nf4"]).plans
    assert rows[1].experts_kept and rows[1].weights_bytes > 0.95 * rows[0].weights_bytes
    dense = planner.plan(ARCHS["Qwen3-32B"], H100, methods=["bnb-nf4"]).plans[0]
    assert not dense.experts_kept and dense.size_reduction_pct > 65


def test_a_reduced_depth_keeps_the_layer_shapes_and_a_hybrid_both_layer_types():
    from qadvisor.core.measure import modelio

    arch = modelio.reduced_depth(ARCHS["Qwen3-30B-A3B"], "4layers")
    assert arch.num_hidden_layers == 4 and arch.layer_weights(0) == ARCHS["Qwen3-30B-A3B"].layer_weights(0)
    with pytest.raises(UserError, match="at least 4 layers"):
        modelio.reduced_depth(ARCHS["Qwen3.5-27B"], "2layers")
    with pytest.raises(UserError, match="write the depth as 1layers"):
        modelio.reduced_depth(ARCHS["Qwen3-8B"], "lots")


def test_an_moe_takes_no_dense_models_published_accuracy():
    from qadvisor.core.advise.evidence import evidence

    assert evidence("Qwen3-30B-A3B", "gguf-q4_k_m") is None and evidence("Qwen3.5-397B-A17B", "gptq-int4") is None
    assert evidence("Qwen3-32B", "gguf-q4_k_m") is not None  # a dense model's nearest size, labelled with its name

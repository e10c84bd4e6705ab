"""The planner's formulas on hand-computed cases, and against Qwen's published memory figures."""

import json

import pytest

from qadvisor.core import architectures
from qadvisor.core.plan import planner
from qadvisor.errors import UserError
from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.plan import Target
from tests.conftest import run_cli

ARCHS = architectures.builtin_architectures()
A100 = planner.parse_target("A100-80GB")

# A toy shape small enough to work out by hand: h=8, i=16, 2 layers, 2 heads (head_dim 4), 1 KV head, V=10.
TOY = Architecture(name="toy", hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, vocab_size=10, tie_word_embeddings=True)


def test_param_count_by_hand():
    # per layer: q 8·8 + k 8·4 + v 8·4 + o 8·8 + 3·8·16 = 576 linear, qkv bias 8+4+4 = 16, norms 16 → 608
    assert architectures.param_count(TOY) == 10 * 8 + 2 * 608 + 8


@pytest.mark.parametrize("name, billions", [("Qwen2.5-0.5B", 0.494), ("Qwen2.5-7B", 7.616), ("Qwen2.5-72B", 72.706)])
def test_param_count_matches_qwen(name, billions):
    assert architectures.param_count(ARCHS[name]) / 1e9 == pytest.approx(billions, abs=0.001)


def test_bf16_weights_by_hand():
    held, read = planner.weights_bytes(TOY, planner.formats()["bf16"])
    assert held == 2 * architectures.param_count(TOY)
    # Tied: per token the lm_head (= the embedding) is read in full.
    assert read == held


def test_gptq_int4_linear_by_hand():
    size = planner.formats()["gptq-int4"].linear_bytes(256, 64)
    # qweight 256·64/2 + 2 groups·64 cols·(2 B scale + 0.5 B zero) + g_idx 256·4
    assert size == 8192 + 2 * 64 * 2.5 + 1024


def test_kv_cache_by_hand():
    # 2 · layers 2 · kv heads 1 · head_dim 4 · context 100 · batch 3 · 2 bytes
    assert planner.kv_cache_bytes(TOY, 100, 3) == 2 * 2 * 1 * 4 * 100 * 3 * 2


def test_a_quantized_kv_cache_by_hand():
    """The bundled model's shape (8 layers · 2 KV heads · 64) with an fp32 cache after a 128-token prompt and 31 new
    positions, as the trials hold it: kv-int4 keeps the 31 positions since the prompt dense (4 bytes) and the 128 in
    4 bits with an fp32 scale and shift per group of 64 (0.5 + 8/64 bytes). The trials measured both figures."""
    from qadvisor.core.measure.modelio import bundled_model_dir
    from qadvisor.quantizers import registry

    arch = architectures.resolve_architecture(str(bundled_model_dir()))
    kv4 = registry.methods()["kv-int4"]
    assert planner.kv_cache_bytes(arch, 159, 1, 4) == 2048 * 159 * 4 == 1_302_528
    assert planner.kv_cache_bytes(arch, 159, 1, 4, kv=kv4, prompt=128) == 2048 * (31 * 4 + 128 * 0.625) == 417_792


def test_a_kv_stack_is_planned_with_its_weights_and_a_smaller_cache():
    arch = architectures.resolve_architecture("Qwen2.5-7B")
    target = planner.parse_target("A100-80GB")
    alone, stacked = planner.plan(arch, target, context=32768, methods=["bnb-nf4", "bnb-nf4+kv-int2"]).plans
    assert stacked.method == "bnb-nf4+kv-int2" and stacked.weights_bytes == alone.weights_bytes
    assert stacked.kv_cache_bytes < alone.kv_cache_bytes / 4  # 2 bits and a group's scale and shift against 16 bits
    assert stacked.total_bytes < alone.total_bytes and stacked.decode_tok_s_bound > alone.decode_tok_s_bound
    assert "KV cache in 2 bits" in stacked.notes
    with pytest.raises(UserError, match="cannot stack"):
        planner.plan(arch, target, methods=["bnb-nf4+gptq-int4"])


def test_fp32_compute_doubles_only_the_unquantized_tensors():
    fmt = planner.formats()["bnb-int8"]
    bf16, _ = planner.weights_bytes(TOY, fmt)
    fp32, _ = planner.weights_bytes(TOY, fmt, dense_bytes=4)
    # embedding 10·8 + per layer (qkv bias 16 + norms 16) · 2 + final norm 8 = 152 elements, 2 more bytes each
    assert fp32 - bf16 == 152 * 2
    assert planner.kv_cache_bytes(TOY, 100, 3, dtype_bytes=4) == 2 * planner.kv_cache_bytes(TOY, 100, 3)


def test_decode_bound_is_bandwidth_over_bytes_read():
    target = Target(name="t", memory_bytes=2**40, bandwidth_gb_s=1.0, bandwidth_source="test", device_type="gpu")
    row = planner.plan(TOY, target, context=10, methods=["bf16"]).plans[0]
    _, read = planner.weights_bytes(TOY, planner.formats()["bf16"])
    assert row.decode_tok_s_bound == pytest.approx(1e9 / (read + row.kv_cache_bytes), rel=1e-3)


def test_fewer_bits_smaller_and_faster_bound():
    rows = {r.method: r for r in planner.plan(ARCHS["Qwen2.5-72B"], A100).plans}
    assert rows["gptq-int2"].weights_bytes < rows["gptq-int4"].weights_bytes < rows["gptq-int8"].weights_bytes
    assert rows["gptq-int2"].decode_tok_s_bound > rows["gptq-int8"].decode_tok_s_bound
    assert rows["gguf-q2_k"].size_class == "high" and rows["bf16"].size_class == "base"
    assert rows["gguf-q8_0"].size_class == "low"


def _as_autoawq_writes_it(monkeypatch):
    """Qwen's AWQ releases (AutoAWQ) store an lm_head copy even where the model ties it; qadvisor's (GPTQModel) do not."""
    from dataclasses import replace

    from qadvisor.quantizers import awq

    monkeypatch.setattr(awq.BACKEND, "storage", tuple(replace(f, untie_lm_head=True) for f in awq.BACKEND.storage))


def test_matches_qwen_published_memory_within_5_percent(monkeypatch):
    # Qwen2.5's table (A100, AutoAWQ 0.2.6) and Qwen3's (H20, transformers 4.51), dense and MoE, bf16 to AWQ
    checked = 0
    for table in planner.published_memory_tables():
        if table.get("gpu") is None:  # Qwen2.5's AWQ files of tied models carry an lm_head copy; Qwen3's do not
            _as_autoawq_writes_it(monkeypatch)
        else:
            monkeypatch.undo()
        target = planner.parse_target(table.get("gpu", "A100-80GB"))
        for model, figures in table["memory_gib"].items():
            rows = planner.plan(ARCHS[model], target, context=table["context"], prompt_tokens=1,
                                methods=list(figures)).plans
            for row in rows:
                assert row.total_bytes / 2**30 == pytest.approx(figures[row.method], rel=0.05), (model, row.method)
                checked += 1
    assert checked == 28 + 20


def test_awq_on_a_tied_model_peaks_while_loading(monkeypatch):
    # The checkpoint's lm_head copy is resident until transformers ties it, and that outweighs the KV cache
    # and overhead of generating afterwards, so the peak is the loaded weights.
    ours = planner.plan(ARCHS["Qwen2.5-0.5B"], A100, context=2049, prompt_tokens=1, methods=["awq-int4"]).plans[0]
    _as_autoawq_writes_it(monkeypatch)
    arch = ARCHS["Qwen2.5-0.5B"]
    row = planner.plan(arch, A100, context=2049, prompt_tokens=1, methods=["awq-int4"]).plans[0]
    assert planner.duplicate_head_bytes(arch, planner.formats()["awq-int4"]) == 151936 * 896 * 2
    assert row.total_bytes == row.weights_bytes
    assert row.weights_bytes - ours.weights_bytes == 151936 * 896 * 2  # qadvisor's own awq-int4 ties it
    untied = planner.plan(ARCHS["Qwen2.5-7B"], A100, context=2049, prompt_tokens=1, methods=["awq-int4"]).plans[0]
    assert untied.total_bytes == untied.weights_bytes + untied.kv_cache_bytes + untied.overhead_bytes


def test_72b_gpu_counts_match_qwen():
    published = planner.published_memory("Qwen2.5-72B")["gpus_used"]["Qwen2.5-72B"]
    rows = planner.plan(ARCHS["Qwen2.5-72B"], A100, context=2049, prompt_tokens=1, methods=list(published)).plans
    assert {r.method: r.devices_needed for r in rows} == published


def test_targets():
    assert planner.parse_target("H100-80GBx4").count == 4
    with pytest.raises(UserError, match="unknown target"):
        planner.parse_target("TPU-v9")
    this = planner.parse_target("this", ram_available=8 << 30, probe=lambda: 12.5)
    assert this.device_type == "gpu" or (this.bandwidth_gb_s == 12.5 and this.memory_bytes == 8 << 30)


def test_model_from_config_file(tmp_path):
    shape = json.loads(json.dumps(ARCHS["Qwen2.5-7B"].model_dump()))
    shape.update(model_type="qwen2")
    (tmp_path / "config.json").write_text(json.dumps(shape))
    assert architectures.param_count(architectures.resolve_architecture(str(tmp_path))) == architectures.param_count(ARCHS["Qwen2.5-7B"])
    with pytest.raises(UserError, match="unknown model"):
        architectures.resolve_architecture("Qwen2.5-9000B")


def test_plan_cli_json_has_contract_fields():
    proc = run_cli("plan", "--model", "Qwen2.5-72B", "--target", "A100-80GB", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"model", "params", "context", "plans"} <= set(data)
    for key in ("method", "bits", "weights_bytes", "kv_cache_bytes", "overhead_bytes", "total_bytes",
                "size_reduction_pct", "fits", "decode_tok_s_bound"):
        assert key in data["plans"][0]
    assert data["label"] == "estimate"


def test_plan_cli_bad_input_is_one_line():
    proc = run_cli("plan", "--model", "Qwen9-1T")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unknown model" in proc.stderr

"""Shared test data: recorded-looking results and an export for tests that need them but no measurement."""

from qadvisor.schemas.export import ModelInfo, RunExport, RunSettings
from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.result import TrialResult


def sample_export() -> RunExport:
    hw = HardwareInfo(cpu_model="Test CPU", physical_cores=2, logical_cores=2, isa_flags=["AVX2"],
                      ram_total_bytes=8 << 30, ram_available_bytes=4 << 30, disk_free_bytes=10 << 30,
                      os="Linux", python="3.11")
    ok = TrialResult(method="bnb-nf4", backend="bnb", bits=4, status="ok", device="cpu: Test CPU, 2 threads",
                     size_bytes=10 << 20, compression_ratio=3.0, size_reduction_pct=66.7, prefill_tok_s=900.0,
                     decode_tok_s=80.0, decode_tok_s_spread=4.0, ttft_ms=140.0, peak_rss_bytes=500 << 20, ppl=12.5,
                     ppl_delta_pct=4.2, kl_mean=0.05, top1_agreement=0.9)
    failed = TrialResult(method="gptq-int4", backend="gptq", bits=4, status="failed", reason="not available here")
    return RunExport(qadvisor_version="0.1.0", created_at="2026-11-24T00:00:00+00:00", hardware=hw,
                     model=ModelInfo(name="m", path="/m", params=1000, bf16_bytes=30 << 20, ref_ppl=12.0, eval_tokens=2040),
                     settings=RunSettings(prompt_tokens=128, decode_tokens=32, repeats=5, threads=2, device="cpu"),
                     results=[ok, failed])


BF16 = 30_000_000


def result(method, size_mb, tok_s, kl, ppl_pct, backend="x"):
    size = int(size_mb * 1e6)
    return TrialResult(method=method, backend=backend, bits=4, status="ok", device="cpu: test", size_bytes=size,
                       compression_ratio=BF16 / size, size_reduction_pct=100 * (1 - size / BF16), prefill_tok_s=500,
                       decode_tok_s=tok_s, decode_tok_s_spread=1.0, ttft_ms=50, peak_rss_bytes=10**9, ppl=10,
                       ppl_delta_pct=ppl_pct, kl_mean=kl, top1_agreement=0.9)


# Shaped like a CPU run: fp32 fastest and exact, 4-bit small and slow, 2-bit tiny and lossy.
RECORDED = [
    result("fp32", 60, 90.0, 0.0, 0.0),
    result("int8", 19, 40.0, 0.0005, 0.1),
    result("int4-fast", 13, 55.0, 0.02, 2.0),
    result("int4-slow", 12.5, 20.0, 0.015, 1.5),
    result("int3", 10.5, 25.0, 0.08, 8.0),
    result("int2", 8.5, 30.0, 0.6, 60.0),
]


def two_kind_export():
    """A --cluster export: one ok method measured on two nodes of two hardware kinds, advised per kind."""
    from qadvisor.app.advice import readvise
    from qadvisor.core.hardware import hardware_kind
    from qadvisor.schemas.export import HardwareKind
    from qadvisor.schemas.priorities import load_profile

    export = sample_export()
    fast = export.hardware.model_copy(update={"cpu_model": "Fast CPU", "isa_flags": ["AVX2", "AVX512F"]})
    kinds = [hardware_kind(export.hardware), hardware_kind(fast)]
    ok = export.results[0]
    export.results = [ok.model_copy(update={"node": "10.0.0.1 (aaaa)", "kind": kinds[0]}),
                      ok.model_copy(update={"node": "10.0.0.2 (bbbb)", "kind": kinds[1], "decode_tok_s": 200.0})]
    export.kinds = [HardwareKind(kind=kinds[0], hardware=export.hardware, nodes=["10.0.0.1 (aaaa)"]),
                    HardwareKind(kind=kinds[1], hardware=fast, nodes=["10.0.0.2 (bbbb)"])]
    return readvise(export, load_profile("balanced"))


def split_gguf(source, folder, parts: int = 3, name: str = "tiny-q4_k_m") -> list:
    """`source` rewritten as llama.cpp's split GGUF (NAME-00001-of-0000N.gguf …), as Qwen ships its larger files:
    the metadata in the first part, the tensors spread over all of them. Returns the parts, first first."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    per_part = -(-len(reader.tensors) // parts)
    writer = gguf.GGUFWriter(str(folder / f"{name}.gguf"), reader.fields["general.architecture"].contents(),
                             split_max_tensors=per_part)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by the writer itself
        kind = field.types[0]
        writer.add_key_value(field.name, field.contents(), kind,
                             sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(folder.glob(f"{name}-*-of-*.gguf"))


TOY_LINEAR_ATTENTION = dict(attn_output_gate=True, full_attention_interval=4, linear_num_key_heads=4,
                            linear_num_value_heads=16, linear_key_head_dim=32, linear_value_head_dim=32,
                            linear_conv_kernel_dim=4)
TOY_EXPERTS = dict(num_experts=16, num_experts_per_tok=2, moe_intermediate_size=128)  # not 8: llama.cpp gives
# 8-expert models (Mixtral) rules of their own, which no Qwen model meets and quantizers/gguf_mix.py leaves out
TOY_FAMILIES = {
    "qwen3": dict(intermediate_size=512),
    "qwen3_moe": dict(**TOY_EXPERTS),
    "qwen3_next": dict(shared_expert_intermediate_size=128, **TOY_EXPERTS, **TOY_LINEAR_ATTENTION),
    "qwen3_5": dict(intermediate_size=512, **TOY_LINEAR_ATTENTION),
    "qwen3_5_moe": dict(shared_expert_intermediate_size=128, **TOY_EXPERTS, **TOY_LINEAR_ATTENTION),
}


def toy_architecture(family: str):
    """A few-MB model of a family's layer types (every row a multiple of 128, the bundled tokenizer's vocabulary):
    the real modules, at a shape every backend's kernels take."""
    from qadvisor.schemas.architecture import Architecture

    return Architecture(name=f"toy-{family}", family=family, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=64, vocab_size=8192, qk_norm=True, attention_qkv_bias=False,
                        **TOY_FAMILIES[family])


def toy_model(family: str, folder):
    """The toy of a family written with random weights (a synthetic model) into `folder`."""
    from qadvisor.core.measure import modelio, synthetic

    return synthetic.build(toy_architecture(family), folder, modelio.bundled_model_dir(), {})


def fp8_checkpoint(source, folder, block: int = 128):
    """`source`'s linears written as Qwen's FP8 releases lay them out: float8_e4m3fn weights, an fp32 weight_scale_inv
    per block × block tile, the config's quantization_config saying so."""
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    (folder / "synthetic.json").unlink(missing_ok=True)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    for shard in folder.glob("*.safetensors"):
        tensors = load_file(str(shard))
        for name in [n for n in tensors if n.endswith("proj.weight") and tensors[n].dim() == 2]:
            out, inputs = tensors[name].shape
            tiles = tensors[name].float().reshape(out // block, block, inputs // block, block)
            scale = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12) / 448.0  # e4m3's largest value
            tensors[name] = (tiles / scale[:, None, :, None]).reshape(out, inputs).to(torch.float8_e4m3fn)
            tensors[f"{name}_scale_inv"] = scale
            index["weight_map"][f"{name}_scale_inv"] = shard.name
        save_file(tensors, str(shard), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": [block, block]}
    (folder / "config.json").write_text(json.dumps(config))
    return folder

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

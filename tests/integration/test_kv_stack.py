"""A weight method stacked with a quantized KV cache, measured for real on the bundled model."""

from qadvisor.schemas.export import load_export
from tests.conftest import run_cli


def test_kv_int4_stack_shrinks_the_cache_and_costs_a_little_accuracy(tmp_path):
    out = tmp_path / "kv.json"
    proc = run_cli("--auto", "--methods", "fp32,fp32+kv-int4", "--repeats", "1", "--export", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "KV KiB" in proc.stdout
    r = {x.method: x for x in load_export(out).results}
    plain, stacked = r["fp32"], r["fp32+kv-int4"]
    assert stacked.status == "ok" and stacked.size_bytes == plain.size_bytes  # the weights are the same
    assert stacked.kv_cache_bytes < plain.kv_cache_bytes / 2  # 4-bit keys and values (plus a full-precision tail)
    assert 0 < stacked.kl_mean < 0.01 and stacked.top1_agreement < 1.0

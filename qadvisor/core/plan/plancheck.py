"""The planner checked against this run: predicted bytes on disk, in memory and in the KV cache next to the
measured ones, using the planner's own formulas at the element size the run computed in."""

from __future__ import annotations

from pathlib import Path

from qadvisor.core.plan import planner

from qadvisor.core import architectures
from qadvisor.errors import UserError
from qadvisor.schemas.plan import PlanCheck
from qadvisor.schemas.result import TrialResult

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def predicted_vs_measured(model_dir: Path, results: list[TrialResult], kv_positions: int | None = None,
                          prompt: int = 0) -> list[PlanCheck]:
    """One row per measured method the planner also knows (a KV stack by its weights and its quantized cache); empty
    when the model's shape is not plannable. `kv_positions`: how many positions the measured KV cache held (prompt +
    new tokens - 1), `prompt` of them from the prompt."""
    try:
        arch = architectures.resolve_architecture(str(model_dir))
    except UserError:
        return []
    rows = []
    for r in results:
        if r.status != "ok" or not r.size_bytes:
            continue
        weights, kv = planner.split_stack(r.method)
        fmt = planner.format_for(weights)
        if fmt is None:
            continue
        predicted, _ = planner.weights_bytes(arch, fmt)
        row = PlanCheck(method=r.method, predicted_bytes=predicted, measured_bytes=r.size_bytes,
                        error_pct=100.0 * (predicted / r.size_bytes - 1), compute_dtype=r.compute_dtype)
        dense = DTYPE_BYTES.get(r.compute_dtype or "")
        if dense and r.weights_mem_bytes:
            row.predicted_mem_bytes = planner.weights_bytes(arch, fmt, dense)[0]
            row.measured_mem_bytes = r.weights_mem_bytes
        if dense and r.kv_cache_bytes and kv_positions:
            row.predicted_kv_bytes = planner.kv_cache_bytes(arch, kv_positions, 1, dense, kv=kv, prompt=prompt)
            row.measured_kv_bytes = r.kv_cache_bytes
        rows.append(row)
    return rows

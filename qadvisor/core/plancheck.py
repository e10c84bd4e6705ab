"""The planner checked against this run: predicted weight bytes next to the bytes each method saved."""

from __future__ import annotations

from pathlib import Path

from qadvisor.core import format as f
from qadvisor.core import planner
from qadvisor.errors import UserError
from qadvisor.models.plan import PlanCheck
from qadvisor.models.result import TrialResult


def predicted_vs_measured(model_dir: Path, results: list[TrialResult]) -> list[PlanCheck]:
    """One row per measured method the planner also knows; empty when the model's shape is not plannable."""
    try:
        arch = planner.resolve_architecture(str(model_dir))
    except UserError:
        return []
    rows = []
    for r in results:
        fmt = planner.FORMAT_BY_NAME.get(r.method)
        if r.status != "ok" or fmt is None or not r.size_bytes:
            continue
        predicted, _ = planner.weights_bytes(arch, fmt)
        rows.append(PlanCheck(method=r.method, predicted_bytes=predicted, measured_bytes=r.size_bytes,
                              error_pct=100.0 * (predicted / r.size_bytes - 1)))
    return rows


def describe(checks: list[PlanCheck]) -> str:
    """`method predicted vs measured MiB (error)` for each check, on one line."""
    return "; ".join(f"{c.method} {f.mib(c.predicted_bytes)} vs {f.mib(c.measured_bytes)} MiB ({c.error_pct:+.1f}%)"
                     for c in checks)

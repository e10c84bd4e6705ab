"""The planner's views every face shows: its table, the one-line summary, the planner checked against a run, and
where a slice measurement's time went."""

from __future__ import annotations

from qadvisor import format as f
from qadvisor.app.views import TableView
from qadvisor.core.advise.target import target_label
from qadvisor.schemas.plan import Plan, PlanCheck


def plan_view(plan: Plan, published: dict | None = None) -> TableView:
    """The planner's table; every figure an estimate, and the title says so. `published`: Qwen's own measured
    memory table holding this model (core.plan.planner.published_memory), shown beside ours with its source."""
    mine = (published or {}).get("memory_gib", {}).get(plan.model, {})
    hybrid = any(r.state_bytes for r in plan.plans)
    rows = [[r.method + (" ²" if r.experts_kept else ""), f"{r.bits:g}", f.gib_figure(r.weights_bytes), f.gib_figure(r.kv_cache_bytes)]
            + ([f.gib_figure(r.state_bytes)] if hybrid else [])
            + [f.gib_figure(r.total_bytes), f.size_change(r.size_reduction_pct),
               ("yes" if r.fits else "no") + (f" {r.devices_needed}×" if r.devices_needed else ""),
               f"{r.decode_tok_s_bound:,.1f}", r.size_class]
            + ([f"{mine[r.method]:.2f}" if r.method in mine else ""] if mine else [])
            for r in plan.plans]
    view = TableView(title="estimates, GiB (formulas: --explain; overhead and more: --json)", rows=rows,
                     columns=["method", "bits", "weights", "KV"] + (["state"] if hybrid else [])
                     + ["total", "vs bf16", "fits", "tok/s ≤", "compression"] + (["Qwen¹"] if mine else []))
    view.above = plan_header(plan)
    if hybrid:
        view.notes.append("KV: the full-attention layers' cache at the context; state: the linear-attention layers' "
                          "recurrent and convolution state, the same at any context")
    if mine:
        view.notes.append("¹ measured by Qwen, not qadvisor: " + published["_source"])
    for why in dict.fromkeys(r.experts_kept for r in plan.plans if r.experts_kept):
        names = ", ".join(r.method for r in plan.plans if r.experts_kept == why)
        view.notes.append(f"² {names}: experts kept in bf16 ({why}), as deploying it would hold them; qadvisor "
                          "refuses to measure it on this model")
    return view


def plan_header(plan: Plan) -> list[str]:
    """The planned model in a line (family, total and active parameters, what the checkpoint stores beside them) and
    the target in another."""
    t = plan.target
    where = (f"{t.name} ×{t.count}, {f.gib(t.memory_bytes)} each" if t.device_type == "gpu"
             else f"this CPU, {f.gib(t.memory_bytes)} RAM free")
    active = (f" ({plan.active_params / 1e9:.2f} B active per token)"
              if plan.active_params and plan.active_params < plan.params else "")
    stored = "".join(f"; the checkpoint also stores {name} ({n / 1e9:.2f} B, not run for text)"
                     for name, n in plan.stored_extra_params.items())
    return [f"{plan.model} ({plan.family}) — {plan.params / 1e9:.2f} B parameters{active}{stored}",
            f"context {plan.context}, batch {plan.batch}, prompt {plan.prompt_tokens}; target {where}, "
            f"{t.bandwidth_gb_s:g} GB/s ({t.bandwidth_source})"]


def plan_summary(plan: Plan, method: str | None) -> str:
    """One line: the planned model on its target with `method` — fits or not, size, decode bound (estimates)."""
    where = f"{plan.model} on {target_label(plan)}"
    row = next((r for r in plan.plans if method and r.method == method), None)
    if row is None:
        return (f"{where} (estimates): {method or 'the recommendation'} is not among the methods planned here "
                f"({', '.join(r.method for r in plan.plans)}); `qadvisor plan --model {plan.model}` sizes every method")
    gpus = row.devices_needed
    fit = (f"fits on {gpus} GPU(s)" if row.fits else f"does not fit (needs {gpus} GPUs)") if gpus else \
        ("fits" if row.fits else "does not fit")
    return (f"{where} with {row.method} (estimate): {fit}"
            + f", weights {f.gib(row.weights_bytes)}, total {f.gib(row.total_bytes)}, "
            f"decode ≤ {row.decode_tok_s_bound:.1f} tok/s, "
            # the archetype is the advisor's, from measured numbers: the planner's size band is not repeated here
            + ("an unquantized baseline" if row.size_class == "base" else f"{f.size_change(row.size_reduction_pct)} vs bf16"))


def plan_check_lines(checks: list[PlanCheck]) -> list[str]:
    """One line per method: predicted vs measured on disk, in memory (at its compute dtype) and in the KV cache."""
    lines = []
    for c in checks:
        parts = [f"disk {_pair(c.predicted_bytes, c.measured_bytes)}"]
        if c.predicted_mem_bytes and c.measured_mem_bytes:
            parts.append(f"memory ({c.compute_dtype}) {_pair(c.predicted_mem_bytes, c.measured_mem_bytes)}")
        if c.predicted_kv_bytes and c.measured_kv_bytes:
            parts.append(f"KV cache {_pair(c.predicted_kv_bytes, c.measured_kv_bytes)}")
        lines.append(f"{c.method}: " + " · ".join(parts))
    return lines


def _pair(predicted: int, measured: int) -> str:
    return f"{f.mib(predicted)} vs {f.mib(measured)} MiB ({100 * (predicted / measured - 1):+.1f}%)"

"""The planner's views every face shows: its table, the speeds projected from slices, the one-line summary, the
planner checked against a run, and where a slice measurement's time went."""

from __future__ import annotations

import os

from qadvisor import format as f
from qadvisor.app.views import TableView, slice_time_line
from qadvisor.core.contention import machine_words
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


def projection_view(plan: Plan) -> TableView:
    """Speeds projected from slices measured here, beside the bandwidth bound and what share of it they reach; what
    was not measured above it, the basis and what the marks mean below."""
    rows = [r for r in plan.plans if r.projection is not None]
    view = TableView(title="", columns=[], rows=[], above=[f"[red]not measured[/] {n}" for n in plan.measure_notes])
    if not rows:
        return view
    p0 = rows[0].projection
    view.title = (f"projected for all {p0.layers_projected} layers from {p0.layers_measured[0]}- and "
                  f"{p0.layers_measured[1]}-layer slices measured on {p0.device}")
    view.columns = ["method", "decode tok/s", "range", "of bound", "prefill tok/s", "range", "per layer ms",
                    "fixed ms", "fits here"]
    view.rows = [_projection_row(r) for r in rows]
    common, own = _shared_basis([(r.method, r.projection.basis) for r in rows])
    view.notes = [f"basis: {common}. Per layer and fixed ms are per decoded token. 'of bound' = projected decode "
                  "÷ the bandwidth bound above.", *(f"  {method}: {tail}" for method, tail in own)]
    view.lines = _slow_slices(rows)
    if any(not r.fits for r in rows):
        view.lines.append(f"{plan.model} does not fit in this machine's memory with "
                          f"{', '.join(r.method for r in rows if not r.fits)}: those projections answer “if it fit”."
                          + (f" Streamed from disk by mmap (GGUF): measured read rate {plan.disk_read_gb_s:.2f} GB/s "
                             "÷ the weights' bytes per token." if plan.disk_read_gb_s else ""))
    if slices := slice_time_line(plan):
        view.notes.append(slices)
    return view


def _projection_row(r) -> list[str]:
    p = r.projection
    mark = " ⚠" if machine_words(p.cpu_contention, p.pace_ratio) else ""  # a busy CPU or a slow machine
    decode = "unreliable" if f.unreliable(p.decode_tok_s, p.decode_tok_s_range) else f.num(p.decode_tok_s, 2)
    fits = "yes" if r.fits else "no" + (f" (mmap from disk: {r.streamed_decode_tok_s:.2f} tok/s)"
                                        if r.streamed_decode_tok_s else "")
    return [r.method, decode + mark, _span(p.decode_tok_s_range), f.pct(r.bound_fraction), f.num(p.prefill_tok_s, 1),
            _span(p.prefill_tok_s_range, 1), f"{p.decode_per_layer_ms:.1f}", f"{p.decode_fixed_ms:.1f}", fits]


def _slow_slices(rows) -> list[str]:
    """What the marks and 'unreliable' in the projection table mean, for the rows that have them."""
    marked = [f"{r.method} ({words})" for r in rows
              if (words := machine_words(r.projection.cpu_contention, r.projection.pace_ratio))]
    wide = [r.method for r in rows if f.unreliable(r.projection.decode_tok_s, r.projection.decode_tok_s_range)]
    lines = [f"⚠ slices timed while the machine was busy or ran slow: {', '.join(marked)}"] if marked else []
    if wide:
        lines.append(f"unreliable: {', '.join(wide)}: the projected range is wider than the figure or has no upper end "
                     "(the two depths' timings were too noisy to tell a layer's cost); measure again on a quiet machine")
    return lines


def _shared_basis(bases: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """The part of the projections' bases every method shares, and what each adds to it (GPTQ's rounding, a
    GGUF mix's per-layer scale)."""
    texts = [b for _, b in bases]
    common = os.path.commonprefix(texts)
    common = common if all(t == common or t[len(common):].startswith("; ") for t in texts) else \
        common[:common.rfind("; ")]
    return common, [(m, b[len(common):].removeprefix("; ")) for m, b in bases if b != common]


def _span(span, digits: int = 2) -> str:
    if span is None:
        return "—"
    return f"≥ {f.num(span[0], digits)}" if span[1] is None else f"{f.num(span[0], digits)}–{f.num(span[1], digits)}"


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

"""A Markdown report of a run a team can paste into a design review."""

from __future__ import annotations

from qadvisor.core import format as f
from qadvisor.core.plancheck import describe
from qadvisor.models.export import RunExport


def markdown(export: RunExport) -> str:
    hw, m, s = export.hardware, export.model, export.settings
    lines = [
        f"# Quantization advice: {m.name}",
        "",
        f"Measured by qadvisor {export.qadvisor_version} on {export.created_at}.",
        "",
        "## Hardware",
        "",
        f"- CPU: {hw.cpu_model}, {hw.physical_cores} physical / {hw.logical_cores} logical cores, "
        f"ISA {', '.join(hw.isa_flags) or 'none listed'}",
        f"- RAM {f.gib(hw.ram_total_bytes)}; {hw.os}; torch {hw.torch}; CUDA {hw.cuda or 'none'}",
        "- GPUs: " + (", ".join(f"{g.name} ({f.gib(g.vram_bytes)})" for g in hw.gpus) or hw.gpu_note),
        f"- Trials ran on: {s.device}",
        "",
        "## Measured results",
        "",
        f"{m.params:,} parameters; bf16 baseline {f.mib(m.bf16_bytes)} MiB (measured); "
        + (f"fp32 reference perplexity {m.ref_ppl:.2f} on {m.eval_tokens} held-out tokens. " if m.ref_ppl is not None
           else "accuracy n/a: random weights. ")
        + f"Batch 1, greedy, prompt {s.prompt_tokens} tokens, "
        f"{s.decode_tokens} new, median of {s.repeats} after a warm-up (± half the range).",
        "",
        "| method | backend | size MiB | vs bf16 | prefill tok/s | decode tok/s | TTFT ms | peak RSS MiB | PPL | ΔPPL | KL | top-1 | type |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    kinds = export.recommendation.archetypes if export.recommendation else {}
    for r in export.results:
        if r.status != "ok":
            continue
        lines.append(
            f"| {r.method} | {r.backend} | {f.mib(r.size_bytes)} | {r.compression_ratio:.2f}× | {r.prefill_tok_s:.0f} | "
            f"{f.pm(r.decode_tok_s, r.decode_tok_s_spread)} | {r.ttft_ms:.1f} | {f.mib(r.peak_rss_bytes)} | {r.ppl:.2f} | "
            f"{f.signed_pct(r.ppl_delta_pct)} | {f.sci(r.kl_mean)} | {f.pct(r.top1_agreement)} | {kinds.get(r.method, '—')} |"
        )
    for r in export.results:
        if r.status != "ok":
            lines.append(f"\n- {r.method} ({r.backend}) was not measured: {r.status}: {r.reason}")
    if not export.complete:
        lines.append(f"\n- **Incomplete run** (stopped by the user): {', '.join(export.cut)} not measured")
    if export.plan_check:
        lines += ["", "Planner check (predicted from the architecture vs measured in this run):", ""]
        lines += [f"- {line}" for line in describe(export.plan_check)]
    rec = export.recommendation
    if rec is not None:
        p = rec.priorities or export.priorities
        lines += ["", "## Recommendation", "", f"**{rec.headline}**", ""]
        if p is not None:
            w = p.weights()
            lines.append(f"Priorities: {p.name} (storage {w['storage']:.2f}, latency {w['latency']:.2f}, "
                         f"accuracy {w['accuracy']:.2f}); limits: "
                         + (", ".join(f"{k} {v}" for k, v in p.limits.model_dump().items() if v is not None) or "none"))
            lines.append("")
        lines += [f"- {reason}" for reason in rec.reasons]
        if rec.flip:
            lines.append(f"- What would change it: {rec.flip}")
        lines.append(f"- Pareto front (size × speed × loss): {', '.join(rec.pareto_front)}")
        for method, why in rec.ruled_out.items():
            lines.append(f"- Ruled out {method}: {'; '.join(why)}")
    if export.plan is not None:
        plan = export.plan
        lines += ["", f"## Plan for {plan.model} on {plan.target.name} ×{plan.target.count} (estimates)", "",
                  "| method | weights GiB | total GiB | fits | GPUs | decode ≤ tok/s |", "|---|--:|--:|:-:|--:|--:|"]
        for row in plan.plans:
            lines.append(f"| {row.method} | {row.weights_bytes / 2**30:.1f} | {row.total_bytes / 2**30:.1f} | "
                         f"{'yes' if row.fits else 'no'} | {row.devices_needed or '—'} | {row.decode_tok_s_bound:.1f} |")
    lines += target_markdown(export) + time_markdown(export)
    return "\n".join(lines) + "\n"


def time_markdown(export: RunExport, narrow: bool = False) -> list[str]:
    """Where the run's time went (nothing for exports from before step times were kept)."""
    from qadvisor.app.views import time_view

    view = time_view(export)
    return ["", "## Where the time went", ""] + table_markdown(view, narrow, title=False) if view.rows else []


def table_markdown(view, narrow: bool = False, title: bool = True) -> list[str]:
    """A shared view's title, table and notes as Markdown lines. `narrow`: a line per row instead of a table, for a
    half-width pane where eight columns would be cut to "…"; `title` False when a heading says it already."""
    lines = [view.title + ".", ""] if title else []
    if narrow:
        lines += [f"- **{row[0]}**: " + " · ".join(f"{col} {value}" for col, value in zip(view.columns[1:], row[1:]))
                  for row in view.rows]
    else:
        lines += ["| " + " | ".join(view.columns) + " |", "|---|" + "--:|" * (len(view.columns) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in view.rows]
    return lines + [""] + [f"- {line}" for line in view.lines] + [f"- {note}" for note in view.notes]


def target_markdown(export: RunExport, narrow: bool = False) -> list[str]:
    """The advice for the planned target as Markdown lines (the report and the TUI show the same view). `narrow`:
    a line per method instead of a table, for a half-width pane where eight columns would be cut to "…"."""
    from qadvisor.app.views import target_view

    view = target_view(export)
    if view is None:
        return []
    return ["", f"## {view.headline or 'Advice for ' + export.target.model}", ""] + table_markdown(view, narrow)

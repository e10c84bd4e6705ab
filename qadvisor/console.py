"""The headless face: prints hardware, methods, and a run's events and table (no Textual here)."""

from __future__ import annotations

import os
import signal
import sys
import threading

from rich.console import Console
from rich.table import Table

from qadvisor.core import format as f
from qadvisor.app.report import markdown
from qadvisor.models.events import Error, Event, Progress, Result
from qadvisor.models.export import save_export
from qadvisor.models.hardware import HardwareInfo
from qadvisor.models.jsonfile import write_text_atomic

def stdout_console() -> Console:
    """Rich console for stdout; when piped, wide enough that tables keep their columns."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def print_hardware(info: HardwareInfo) -> None:
    out = stdout_console()
    out.print(f"[b]CPU[/]   {info.cpu_model} — {info.physical_cores} physical / {info.logical_cores} logical cores; "
              f"ISA: {', '.join(info.isa_flags) or 'none of AVX2/AVX-512/AMX/NEON'}")
    out.print(f"[b]RAM[/]   {f.gib(info.ram_total_bytes)} total, {f.gib(info.ram_available_bytes)} available; "
              f"disk {f.gib(info.disk_free_bytes)} free")
    out.print(f"[b]OS[/]    {info.os}, Python {info.python}, torch {info.torch or 'not installed'}, CUDA {info.cuda or 'none'}")
    if info.gpus:
        for g in info.gpus:
            out.print(f"[b]GPU {g.index}[/] {g.name}, {f.gib(g.vram_bytes)}, compute {g.compute_capability}, driver {g.driver}")
    else:
        out.print(f"[b]GPU[/]   {info.gpu_note}")
    table = Table(title="Backends", title_justify="left")
    for col in ("backend", "here", "why / version", "methods"):
        table.add_column(col)
    for b in info.backends:
        table.add_row(b.backend, "[green]yes[/]" if b.available else "[red]no[/]", b.reason, ", ".join(b.methods))
    out.print(table)


def print_methods(rows: list[dict]) -> None:
    table = Table()
    for col in ("method", "backend", "bits", "group", "here", "default", "what it is / why not"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["backend"], f"{r['bits']:g}", str(r["group_size"] or "—"),
                      "[green]yes[/]" if r["available"] else "[red]no[/]", "•" if r["default"] else "",
                      r["summary"] if r["available"] else r["reason"])
    out = stdout_console()
    out.print(table)
    kv = [r["name"] for r in rows if r["target"] == "kv-cache"]
    refused: dict[str, list[str]] = {}
    for r in rows:
        if r.get("kv_stack"):
            refused.setdefault(r["kv_stack"], []).append(r["name"])
    if kv:
        out.print(f"Stacks: {' / '.join(kv)} go on a weight method as `METHOD+{kv[0]}`, on every one except:")
        for why, names in refused.items():
            out.print(f"  {', '.join(names)}: {why}")


def print_plan(plan, explain: bool = False) -> None:
    """The planner's table; every figure is an estimate, and says so."""
    from qadvisor.core.planner import published_memory

    out = stdout_console()
    t = plan.target
    where = (f"{t.name} ×{t.count}, {f.gib(t.memory_bytes)} each" if t.kind == "gpu" else f"this CPU, {f.gib(t.memory_bytes)} RAM free")
    out.print(f"[b]{plan.model}[/] — {plan.params / 1e9:.2f} B parameters, context {plan.context}, batch {plan.batch}, "
              f"prompt {plan.prompt_tokens}; target {where}, {t.bandwidth_gb_s:g} GB/s ({t.bandwidth_source})")
    published = published_memory()["memory_gib"].get(plan.model, {})
    table = Table(title="[b]estimates[/], GiB (formulas: --explain; overhead and more: --json)", title_justify="left",
                  pad_edge=False, box=None)
    for col in ("method", "bits", "weights", "KV", "total", "vs bf16", "fits", "tok/s ≤", "type"):
        table.add_column(col, justify="left" if col in ("method", "fits") else "right", no_wrap=True)
    if published:
        table.add_column("Qwen¹", justify="right")
    for r in plan.plans:
        fits = ("[green]yes[/]" if r.fits else "[red]no[/]") + (f" {r.devices_needed}×" if r.devices_needed else "")
        row = [r.method, f"{r.bits:g}", _g(r.weights_bytes), _g(r.kv_cache_bytes), _g(r.total_bytes),
               f"{-r.size_reduction_pct:+.0f}%", fits, f"{r.decode_tok_s_bound:,.1f}", r.archetype]
        if published:
            row.append(f"{published[r.method]:.2f}" if r.method in published else "")
        table.add_row(*row)
    out.print(table)
    if published:
        out.print("[dim]¹ measured by Qwen, not qadvisor: " + published_memory()["_source"] + "[/]")
    print_projection(plan)
    if explain:
        for name, formula in plan.formulas.items():
            out.print(f"[b]{name}[/] = {formula}")


def print_projection(plan) -> None:
    """Speeds projected from slices measured here, beside the bandwidth bound and what share of it they reach."""
    out = stdout_console()
    rows = [r for r in plan.plans if r.projection is not None]
    for note in plan.measure_notes:
        out.print(f"[red]not measured[/] {note}")
    if not rows:
        return
    p0 = rows[0].projection
    table = Table(title=f"[b]projected[/] for all {p0.layers_projected} layers from {p0.layers_measured[0]}- and "
                  f"{p0.layers_measured[1]}-layer slices measured on {p0.device}", title_justify="left",
                  pad_edge=False, box=None)
    for col in ("method", "decode tok/s", "range", "of bound", "prefill tok/s", "range", "per layer ms", "fixed ms",
                "fits here"):
        table.add_column(col, justify="left" if col in ("method", "fits here") else "right", no_wrap=True)
    for r in rows:
        p = r.projection
        fits = "yes" if r.fits else "[red]no[/]" + (f" (mmap from disk: {r.streamed_decode_tok_s:.2f} tok/s)"
                                                    if r.streamed_decode_tok_s else "")
        table.add_row(r.method, f.num(p.decode_tok_s, 2), _span(p.decode_tok_s_range), f.pct(r.bound_fraction),
                      f.num(p.prefill_tok_s, 1), _span(p.prefill_tok_s_range, 1), f"{p.decode_per_layer_ms:.1f}",
                      f"{p.decode_fixed_ms:.1f}", fits)
    out.print(table)
    out.print(f"[dim]basis: {p0.basis}. Per layer and fixed ms are per decoded token. 'of bound' = projected decode "
              f"÷ the bandwidth bound above.[/]", soft_wrap=True)
    if any(not r.fits for r in rows):
        out.print(f"[b]{plan.model} does not fit in this machine's memory[/] with "
                  f"{', '.join(r.method for r in rows if not r.fits)}: those projections answer “if it fit”."
                  + (f" Streamed from disk by mmap (GGUF): measured read rate {plan.disk_read_gb_s:.2f} GB/s ÷ "
                     "the weights' bytes per token." if plan.disk_read_gb_s else ""), soft_wrap=True)


def _span(span, digits: int = 2) -> str:
    return "—" if span is None else f"{f.num(span[0], digits)}–{f.num(span[1], digits)}"


def _g(n: int) -> str:
    gib = n / 2**30
    return f"{gib:.1f}" if gib >= 10 else f"{gib:.2f}"


def print_plan_summary(export) -> None:
    """Measured here → this method; for the planned model on the target → fits or not, size, decode bound."""
    from qadvisor.core.planner import summary_for

    rec = export.recommendation
    stdout_console().print(summary_for(export.plan, rec.method if rec else None))


class EventPrinter:
    """One line per step and per result on stderr, so stdout keeps only the table."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.err = Console(stderr=True, highlight=False)

    def say(self, line: str) -> None:
        self.err.print(f"qadvisor: {line}")

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            pct = f" {100 * event.fraction:.0f}%" if event.fraction is not None else ""
            where = "reference" if event.method == "reference" else f"[{self.done + 1}/{self.total}] {event.method}"
            self.err.print(f"  {where}: {event.step}{pct} {event.message}".rstrip())
        elif isinstance(event, Error):
            self.err.print(f"  [red]{event.method}: {event.message}[/]")
        elif isinstance(event, Result):
            self.done += 1
            r = event.result
            if r.status == "ok":
                self.err.print(f"[green]✓[/] {r.method}: {f.mib(r.size_bytes)} MiB ({r.compression_ratio:.2f}× vs bf16), "
                               f"decode {f.num(r.decode_tok_s)} tok/s, ΔPPL {f.signed_pct(r.ppl_delta_pct)}, "
                               f"KL {f.sci(r.kl_mean)}  [{r.total_s:.0f}s]")
            else:
                self.err.print(f"[red]✗[/] {r.method}: {r.status}: {r.reason}")


def print_recommendation(export) -> None:
    """The advisor's answer: headline, reasons with numbers, archetypes, Pareto front, what would flip it."""
    rec = export.recommendation
    out = stdout_console()
    p = rec.priorities or export.priorities
    if p is not None:
        w = p.weights()
        limits = ", ".join(f"{k}={v:g}" for k, v in p.limits.model_dump().items() if v is not None) or "none"
        out.print(f"[dim]priorities {p.name}: storage {w['storage']:.2f}, latency {w['latency']:.2f}, "
                  f"accuracy {w['accuracy']:.2f}; limits: {limits}[/]")
    out.print(f"[b]Recommendation: {rec.headline}[/]" + (f"  [dim](measured on {rec.device})[/]" if rec.device else ""))
    for reason in rec.reasons:
        out.print(f"  • {reason}")
    if rec.flip:
        out.print(f"  • what would change it: {rec.flip}")
    if rec.archetypes:
        fits = rec.fits or {m: [a] for m, a in rec.archetypes.items()}  # exports before `fits` had one label
        groups = {k: [m for m, a in fits.items() if k in a] for k in "ABC"}
        out.print("  archetypes here: " + "; ".join(f"{k}: {', '.join(v) or '—'}" for k, v in groups.items()))
    out.print(f"  Pareto front (size × speed × loss): {', '.join(rec.pareto_front) or '—'}")
    for method, why in rec.ruled_out.items():
        out.print(f"  [red]ruled out[/] {method}: {'; '.join(why)}")


def print_comparison(first, second) -> None:
    """Two runs side by side: per method the change in each metric, and whether the advice differs."""
    from qadvisor.core.compare import compare

    c = compare(first, second)
    out = stdout_console()
    out.print(f"[b]A[/] {first.model.name} on {first.settings.device} ({first.created_at})")
    out.print(f"[b]B[/] {second.model.name} on {second.settings.device} ({second.created_at})")
    table = Table(box=None, pad_edge=False)
    for col in ("method", "size MiB A→B", "decode tok/s A→B", "B/A", "ΔPPL A→B", "KL A→B"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=True)
    for p in c.pairs:
        x, y = p.a, p.b
        table.add_row(p.method, f"{f.mib(x.size_bytes)}→{f.mib(y.size_bytes)}",
                      f"{x.decode_tok_s:.1f}→{y.decode_tok_s:.1f}", f"{p.decode_ratio:.2f}×",
                      f"{f.signed_pct(x.ppl_delta_pct)}→{f.signed_pct(y.ppl_delta_pct)}", f"{f.sci(x.kl_mean)}→{f.sci(y.kl_mean)}")
    out.print(table)
    if c.only_in_a or c.only_in_b:
        out.print("measured in one run only: " + ", ".join([f"{m} (A)" for m in c.only_in_a] + [f"{m} (B)" for m in c.only_in_b]))
    verdict = "the same" if c.same_advice else "[b]different[/]"
    out.print(f"with priorities {c.priorities.name}: A → {c.advice_a.headline}; B → {c.advice_b.headline}: {verdict}")


def run_auto(args, priorities) -> int:
    """`qadvisor --auto`: measure every method, print the table, write the export. Ctrl-C stops the current trial
    and still prints and writes what finished (exit 130); a second Ctrl-C quits at once."""
    from qadvisor.app.auto import AutoSession, auto_options
    from qadvisor.core.modelio import check_synthetic
    from qadvisor.models.jsonfile import check_output_dir, check_output_paths

    opts = auto_options(model=args.model, methods=args.methods.split(",") if args.methods else None,
                        eval_text=args.eval_text, calib_text=args.calib_text, keep_models=args.keep_models,
                        reuse_cache=not args.no_cache,
                        device=args.device, threads=args.threads, repeats=args.repeats,
                        decode_tokens=args.decode_tokens, prompt_tokens=args.prompt_tokens, plan_for=args.plan_for,
                        target=args.target, target_methods=args.target_methods.split(",") if args.target_methods else None)
    check_output_paths(args.export, args.report)  # a run of minutes must not fail at its last step
    check_output_dir(args.keep_models, "--keep-models")
    err = Console(stderr=True, highlight=False)
    if args.model and args.model.startswith("synthetic:"):
        check_synthetic(args.model)  # too big for this machine: one line, before anything is built
        err.print(f"qadvisor: {args.model}: random weights at the real shape (built once, then cached)")
    session = AutoSession(opts, priorities)
    run = session.run
    err.print(f"qadvisor: {len(run.recipes)} methods on {run.model_dir.name} ({run.device_label}); "
              "each runs in its own process")
    interrupted = _measure(session, EventPrinter(session.trials()), err)
    if not session.measured():
        err.print("qadvisor: interrupted before the reference was ready: nothing measured, nothing written")
        return 130
    export = session.export()
    print_run(export)
    _write(export, args.export, args.report, err)
    if interrupted:
        return 130
    return 0 if any(r.status == "ok" for r in export.results) else 1


def _measure(session, printer, err: Console) -> bool:
    """Print the session's events; True when Ctrl-C stopped it. The first Ctrl-C asks the runner to stop (it stops
    the trial's processes and keeps what finished, wherever the run was); a second one quits at once."""
    cancel = threading.Event()

    def on_ctrl_c(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        err.print("qadvisor: interrupted: the current trial is stopped; writing what finished "
                  "(Ctrl-C again quits at once)")

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        for event in session.events(cancel):
            printer(event)
    finally:
        signal.signal(signal.SIGINT, previous)
    return cancel.is_set()


def _write(export, export_path, report_path, err: Console) -> None:
    if export_path:
        save_export(export, export_path)
        err.print(f"export written to {os.fspath(export_path)}" + ("" if export.complete else " (incomplete)"))
    if report_path:
        write_text_atomic(report_path, markdown(export))
        err.print(f"report written to {os.fspath(report_path)}")


def print_run(export) -> None:
    """The measured table, the planner check, the recommendation and, with --plan-for, the target's."""
    from qadvisor.core.plancheck import describe
    from qadvisor.core.table import footnote, not_measured, results_table

    out = stdout_console()
    out.print(results_table(export))
    for line in not_measured(export):
        out.print(f"[red]not measured[/] {line}")
    out.print(f"[dim]{footnote(export)}[/]")
    if export.plan_check:
        out.print("planner check, predicted from the architecture vs measured here:")
        for line in describe(export.plan_check):
            out.print(f"  {line}", soft_wrap=True)
    print_recommendation(export)
    if export.plan is not None:
        print_plan_summary(export)
    if export.target is not None:
        print_target(export)
    from qadvisor.app.views import time_view

    times = time_view(export)
    if times.rows:
        print_view(times)


def print_target(export) -> None:
    """The advice for the model the team will deploy (the shared view, as a Rich table)."""
    from qadvisor.app.views import target_view

    print_view(target_view(export))


def print_view(view) -> None:
    """A shared view (app.views) as a Rich table with its headline, lines and notes."""
    out = stdout_console()
    table = Table(title=f"[b]{view.title}[/]", title_justify="left", pad_edge=False, box=None)
    for col in view.columns:
        table.add_column(col, justify="left" if col in ("method", "fits") else "right", no_wrap=True)
    for row in view.rows:
        table.add_row(*row)
    out.print(table)
    if view.headline:
        out.print(f"[b]{view.headline}[/]")
    for line in view.lines:
        out.print(f"  • {line}", soft_wrap=True)
    for note in view.notes:
        out.print(f"  [dim]{note}[/]", soft_wrap=True)

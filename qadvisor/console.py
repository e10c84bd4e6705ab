"""The headless face: prints hardware, methods, and a run's events and table (no Textual here)."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

from qadvisor import format as f
from qadvisor.app.page import ORDER, run_page
from qadvisor.app.plan_views import plan_view
from qadvisor.app.views import (
    BRIEF_METRICS,
    TEXT_COLUMNS,
    backends_view,
    comparison_view,
    hardware_lines,
    metrics_line,
    slice_time_line,
)
from qadvisor.core.advise.compare import compare
from qadvisor.core.contention import machine_words
from qadvisor.core.plan.planner import published_memory
from qadvisor.schemas.events import Error, Event, Progress, Result
from qadvisor.schemas.hardware import HardwareInfo


def stdout_console() -> Console:
    """Rich console for stdout; when piped, wide enough that tables keep their columns."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def print_hardware(info: HardwareInfo) -> None:
    out = stdout_console()
    for label, text in hardware_lines(info):
        out.print(f"[b]{label:<5}[/] {text}")
    print_view(backends_view(info), boxed=True)


def print_methods(rows: list[dict]) -> None:
    table = Table()
    for col in ("method", "backend", "bits", "group", "here", "default", "what it is / why not"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["backend"], "its budget" if r["form"] else f"{r['bits']:g}", "—" if r["form"] else str(r["group_size"] or "—"),
                      "[green]yes[/]" if r["available"] else "[red]no[/]", "•" if r["default"] else "",
                      (r["summary"] + (" ¹" if r.get("finding") else "")) if r["available"] else r["reason"])
    out = stdout_console()
    out.print(table)
    for finding in dict.fromkeys(r["finding"] for r in rows if r.get("finding")):
        names = [r["name"] for r in rows if r.get("finding") == finding]
        out.print(f"¹ {', '.join(names)}: {finding}", soft_wrap=True)
    kv = [r["name"] for r in rows if r["component"] == "kv-cache"]
    refused: dict[str, list[str]] = {}
    for r in rows:
        if r.get("kv_stack"):
            refused.setdefault(r["kv_stack"], []).append(r["name"])
    if kv:
        out.print(f"Stacks: {' / '.join(kv)} go on a weight method as `METHOD+{kv[0]}`, on every one except:")
        for why, names in refused.items():
            out.print(f"  {', '.join(names)}: {why}")
    print_families(rows)


def print_families(rows: list[dict]) -> None:
    """Which model families each method refuses and why, grouped: the rest it quantizes."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        for why in dict.fromkeys(r.get("not_on", {}).values()):
            families = tuple(label for label, reason in r["not_on"].items() if reason == why)
            groups.setdefault((families, why), []).append(r["name"])
    if not groups:
        return
    out = stdout_console()
    out.print("Model families: every method runs on Qwen2/Qwen2.5 and Qwen3 (dense), and on the others except:")
    for (families, why), names in groups.items():
        out.print(f"  {', '.join(names)} — not on {', '.join(families)}: {why}", soft_wrap=True)


def print_as_shipped(rows: list[dict]) -> None:
    """What `--model CHECKPOINT` measures as it is (qadvisor quantizes nothing): one row per format."""
    table = Table(title="Measured as shipped: --model CHECKPOINT (a folder, a .gguf file, a repo id, OWNER/REPO-GGUF:TYPE) "
                        "[--reference DIR]", title_justify="left")
    for col in ("format", "method", "backend", "the checkpoint says so in", "here"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["format"], r["method"], r["backend"], r["says"],
                      f"[green]yes[/] ({r['reason']})" if r["available"] else f"[red]no[/]: {r['reason']}")
    stdout_console().print(table)


def print_plan(plan, explain: bool = False) -> None:
    """The planner's table (the shared view); every figure is an estimate, and says so."""
    print_view(plan_view(plan, published_memory(plan.model)))
    print_projection(plan)
    if explain:
        out = stdout_console()
        for name, formula in plan.formulas.items():
            out.print(f"[b]{name}[/] = {formula}")


def _machine_mark(p) -> str:
    """` ⚠` where the slices were timed on a busy CPU or a slow machine (core.contention, core.pace)."""
    return " ⚠" if machine_words(p.cpu_contention, p.pace_ratio) else ""


def _slow_slices(rows) -> list[str]:
    """What the marks and 'unreliable' in the projection table mean, for the rows that have them."""
    marked = [f"{r.method} ({words})" for r in rows
              if (words := machine_words(r.projection.cpu_contention, r.projection.pace_ratio))]
    wide = [r.method for r in rows if f.unreliable(r.projection.decode_tok_s, r.projection.decode_tok_s_range)]
    lines = [f"⚠ slices timed while the machine was busy or ran slow: {', '.join(marked)}"] if marked else []
    if wide:
        lines.append(f"unreliable: {', '.join(wide)}: the projected range is wider than the figure (the two depths' "
                     "timings were too noisy to tell a layer's cost); measure again on a quiet machine")
    return lines


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
        decode = "unreliable" if f.unreliable(p.decode_tok_s, p.decode_tok_s_range) else f.num(p.decode_tok_s, 2)
        table.add_row(r.method, decode + _machine_mark(p), _span(p.decode_tok_s_range), f.pct(r.bound_fraction),
                      f.num(p.prefill_tok_s, 1), _span(p.prefill_tok_s_range, 1), f"{p.decode_per_layer_ms:.1f}",
                      f"{p.decode_fixed_ms:.1f}", fits)
    out.print(table)
    common, own = _shared_basis([(r.method, r.projection.basis) for r in rows])
    out.print(f"[dim]basis: {common}. Per layer and fixed ms are per decoded token. 'of bound' = projected decode "
              f"÷ the bandwidth bound above.[/]", soft_wrap=True)
    for method, tail in own:
        out.print(f"[dim]  {method}: {tail}[/]", soft_wrap=True)
    for line in _slow_slices(rows):
        out.print(line, soft_wrap=True)
    if any(not r.fits for r in rows):
        out.print(f"[b]{plan.model} does not fit in this machine's memory[/] with "
                  f"{', '.join(r.method for r in rows if not r.fits)}: those projections answer “if it fit”."
                  + (f" Streamed from disk by mmap (GGUF): measured read rate {plan.disk_read_gb_s:.2f} GB/s ÷ "
                     "the weights' bytes per token." if plan.disk_read_gb_s else ""), soft_wrap=True)

    slices = slice_time_line(plan)
    if slices:
        out.print(f"[dim]{slices}[/]", soft_wrap=True)


def _shared_basis(bases: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """The part of the projections' bases every method shares, and what each adds to it (GPTQ's rounding, a
    GGUF mix's per-layer scale)."""
    texts = [b for _, b in bases]
    common = os.path.commonprefix(texts)
    common = common if all(t == common or t[len(common):].startswith("; ") for t in texts) else \
        common[:common.rfind("; ")]
    return common, [(m, b[len(common):].removeprefix("; ")) for m, b in bases if b != common]


def _span(span, digits: int = 2) -> str:
    return "—" if span is None else f"{f.num(span[0], digits)}–{f.num(span[1], digits)}"


class EventPrinter:
    """One line per step and per result on stderr, so stdout keeps only the table."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        # soft wrap: a line is never cut into two (a terminal wraps it at its width; a log keeps it whole)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def say(self, line: str) -> None:
        self.err.print(f"qadvisor: {line}")

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            pct = f" {100 * event.fraction:.0f}%" if event.fraction is not None else ""
            counted = event.method != "reference" and self.done < self.total  # streaming comes after the trials
            where = f"[{self.done + 1}/{self.total}] {event.method}" if counted else event.method
            self.err.print(f"  {where}: {event.step}{pct} {event.message}".rstrip())
        elif isinstance(event, Error):
            self.err.print(f"  [red]{event.method}: {event.message}[/]")
        elif isinstance(event, Result):
            self.done += 1
            r = event.result
            where = f" @ {r.node}" if r.node else ""
            if r.status == "ok":
                self.err.print(f"[green]✓[/] {r.method}{where}: {metrics_line(r.model_dump(), BRIEF_METRICS)}  [{r.total_s:.0f}s]")
            else:
                self.err.print(f"[red]✗[/] {r.method}{where}: {r.status}: {r.reason}")


def print_recommendations(export) -> None:
    """`qadvisor advise`: the run page's advice and, with --plan-for, the target's; on a cluster, per hardware kind."""
    _print_page(export, ("advice", "target"))


def print_comparison(first, second) -> None:
    """Two runs side by side: per method the change in each metric, and whether the advice differs."""
    view = comparison_view(compare(first, second), f"{first.model.name} on {first.settings.device} ({first.created_at})",
                           f"{second.model.name} on {second.settings.device} ({second.created_at})")
    print_view(view)


# the console's run names its device in the table's title, and `qadvisor hardware` prints the machine
RUN_SECTIONS = tuple(key for key in ORDER if key != "hardware")


def print_run(export) -> None:
    """The run page (app.page): measured table, planner check, advice, plan, target, time; on a cluster, per kind."""
    _print_page(export, RUN_SECTIONS)


def _print_page(export, only: tuple[str, ...]) -> None:
    out = stdout_console()
    for heading, page in run_page(export, only):
        if heading:
            out.rule(f"[b]{heading}[/]", align="left")
        for section in page:
            print_section(section)


def print_section(section) -> None:
    """One section of the run page, laid out for a terminal: the advice as a headline with bullets, the plan as its
    summary line, line-only sections under their heading, tables as Rich tables."""
    out, view = stdout_console(), section.view
    if section.key == "advice":
        if view.title:
            out.print(f"[dim]{view.title}[/]")
        out.print(f"[b]Recommendation: {view.headline}[/]" + "".join(f"  [dim]({note})[/]" for note in view.notes))
        for line in view.lines:
            out.print(f"  • {line}", soft_wrap=True)
    elif section.key == "plan":
        out.print(section.brief)
    elif not view.columns:
        out.print(section.heading[0].lower() + section.heading[1:] + (f", {view.title}" if view.title else "") + ":")
        for line in view.lines:
            out.print(f"  {line}", soft_wrap=True)
    else:
        print_view(view, boxed=section.key == "results")


def print_view(view, boxed: bool = False) -> None:
    """A shared view (app.views) as a Rich table with its headline, lines and notes; "no" in a cell shows red."""
    out = stdout_console()
    for line in view.above:
        out.print(line)
    table = Table(title=f"[b]{view.title}[/]" if view.title else None, title_justify="left", pad_edge=boxed,
                  **({} if boxed else {"box": None}))
    for col in view.columns:
        table.add_column(col, justify="left" if col in TEXT_COLUMNS else "right", no_wrap=col == "method")
    for row in view.rows:
        table.add_row(*(f"[red]{cell}[/]" if cell == "no" else cell for cell in row))
    out.print(table)
    if view.headline:
        out.print(f"[b]{view.headline}[/]")
    for line in view.lines:
        out.print(f"  • {line}", soft_wrap=True)
    for note in view.notes:
        out.print(f"  [dim]{note}[/]", soft_wrap=True)



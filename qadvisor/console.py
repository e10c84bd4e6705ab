"""The headless face: prints hardware, methods, and a run's events and table (no Textual here)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from qadvisor.app.page import ORDER, run_page
from qadvisor.app.plan_views import plan_view, projection_view
from qadvisor.app.views import (
    BRIEF_METRICS,
    TEXT_COLUMNS,
    backends_view,
    comparison_view,
    hardware_lines,
    metrics_line,
)
from qadvisor.core.advise.compare import compare
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
    print_view(projection_view(plan))
    if explain:
        out = stdout_console()
        for name, formula in plan.formulas.items():
            out.print(f"[b]{name}[/] = {formula}")


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
    if not view.columns:
        return
    table = Table(title=f"[b]{view.title}[/]" if view.title else None, title_justify="left", pad_edge=boxed,
                  **({} if boxed else {"box": None}))
    for col in view.columns:
        table.add_column(col, justify="left" if col in TEXT_COLUMNS else "right", no_wrap=col == "method")
    for row in view.rows:
        table.add_row(*(f"[red]{cell}[/]" if cell == "no" or cell.startswith("no (") else cell for cell in row))
    out.print(table)
    if view.headline:
        out.print(f"[b]{view.headline}[/]")
    for line in view.lines:
        out.print(f"  • {line}", soft_wrap=True)
    for note in view.notes:
        out.print(f"  [dim]{note}[/]", soft_wrap=True)



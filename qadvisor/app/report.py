"""A Markdown report of a run a team can paste into a design review."""

from __future__ import annotations

from pathlib import Path

from qadvisor.app.views import TEXT_COLUMNS, plan_check_lines
from qadvisor.schemas.export import RunExport, save_export
from qadvisor.schemas.jsonfile import write_text_atomic


def write_run(export: RunExport, export_path: Path | None, report_path: Path | None) -> list[str]:
    """The export (JSON) and the report (Markdown), each written atomically where asked; returns what was written."""
    written = []
    if export_path:
        save_export(export, export_path)
        written.append(f"export written to {export_path}" + ("" if export.complete else " (incomplete)"))
    if report_path:
        write_text_atomic(report_path, markdown(export))
        written.append(f"report written to {report_path}")
    return written


def markdown(export: RunExport) -> str:
    """The report: the same shared views the CLI and the TUI show, as Markdown; on a cluster, a part per hardware
    kind."""
    from qadvisor.app.views import per_kind

    m = export.model
    lines = [f"# Quantization advice: {m.name}", "", f"Measured by qadvisor {export.qadvisor_version} on "
             f"{export.created_at}."]
    for heading, part in per_kind(export):
        lines += ["", f"# {heading}"] if heading else []
        lines += _one_machine(part)
    return "\n".join(lines) + "\n"


def _one_machine(export: RunExport) -> list[str]:
    from qadvisor.app.views import backends_view, hardware_lines, results_view

    lines = ["", "## Hardware", ""]
    lines += [f"- {label}: {text}" for label, text in hardware_lines(export.hardware)]
    lines += [f"- Trials ran on: {export.settings.device}", ""]
    if export.hardware.backends:
        lines += table_markdown(backends_view(export.hardware))
    lines += ["## Measured results", ""] + table_markdown(results_view(export), title=False)
    if not export.complete:
        lines.append(f"- **Incomplete run** (stopped by the user): {', '.join(export.cut)} not measured")
    if export.plan_check:
        lines += ["", "Planner check (predicted from the architecture vs measured in this run):", ""]
        lines += [f"- {line}" for line in plan_check_lines(export.plan_check)]
    return lines + recommendation_markdown(export) + plan_markdown(export) + target_markdown(export) + time_markdown(export)


def recommendation_markdown(export: RunExport) -> list[str]:
    from qadvisor.app.views import recommendation_view

    if export.recommendation is None:
        return []
    view = recommendation_view(export)
    return (["", "## Recommendation", "", f"**{view.headline}**" + "".join(f" ({note})" for note in view.notes), ""]
            + ([view.title.capitalize(), ""] if view.title else []) + [f"- {line}" for line in view.lines])


def plan_markdown(export: RunExport) -> list[str]:
    from qadvisor.app.views import plan_view

    plan = export.plan
    if plan is None:
        return []
    return ["", f"## Plan for {plan.model} on {plan.target.name} ×{plan.target.count} (estimates)", ""] + table_markdown(
        plan_view(plan))


def time_markdown(export: RunExport, narrow: bool = False) -> list[str]:
    """Where the run's time went (nothing for exports from before step times were kept)."""
    from qadvisor.app.views import time_view

    view = time_view(export)
    return ["", "## Where the time went", ""] + table_markdown(view, narrow, title=False) if view.rows else []


def table_markdown(view, narrow: bool = False, title: bool = True) -> list[str]:
    """A shared view's title, table and notes as Markdown lines. `narrow`: a line per row instead of a table, for a
    half-width pane where eight columns would be cut to "…"; `title` False when a heading says it already."""
    lines = [view.title + ".", ""] if title and view.title else []
    lines += [f"- {line}" for line in view.above] + ([""] if view.above else [])
    if narrow:
        lines += [f"- **{row[0]}**: " + " · ".join(f"{col} {value}" for col, value in zip(view.columns[1:], row[1:]))
                  for row in view.rows]
    else:
        lines += ["| " + " | ".join(view.columns) + " |",
                  "|" + "".join("---|" if col in TEXT_COLUMNS else "--:|" for col in view.columns)]
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

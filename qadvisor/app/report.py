"""A Markdown report of a run a team can paste into a design review."""

from __future__ import annotations

from pathlib import Path

from qadvisor.app.page import run_page
from qadvisor.app.views import TEXT_COLUMNS
from qadvisor.schemas.export import RunExport, save_export
from qadvisor.schemas.jsonfile import write_text_atomic


def write_run(export: RunExport, export_path: Path | None, report_path: Path | None) -> list[str]:
    """The export (JSON) and the report (Markdown), each written atomically where asked; returns what was written."""
    written = []
    if export_path:
        save_export(export, export_path)
        written.append(f"export written to {export_path}" + ("" if export.complete else " (incomplete)"))
    if report_path:
        from qadvisor.app import plots

        pictures = plots.write_plots(export, Path(report_path))
        write_text_atomic(report_path, markdown(export) + _pictures(pictures, plots.available()))
        written.append(f"report written to {report_path}" + (f" with {len(pictures)} plot(s) beside it" if pictures else ""))
    return written


def _pictures(pictures: list[tuple[str, str]], plotting: bool) -> str:
    """The report's pictures section: each image beside it, or how to get them."""
    if not plotting:
        return "\n## Pictures\n\nThe trade-off plot and the mixes' sensitivity maps need matplotlib: pip install matplotlib\n"
    if not pictures:
        return ""
    return "\n## Pictures\n" + "".join(f"\n![{caption}]({name})\n\n*{caption}*\n" for caption, name in pictures)


def markdown(export: RunExport) -> str:
    """The report: the run page (app.page) as Markdown; on a cluster, a part per hardware kind."""
    m = export.model
    lines = [f"# Quantization advice: {m.name}", "", f"Measured by qadvisor {export.qadvisor_version} on "
             f"{export.created_at}."]
    for heading, page in run_page(export):
        lines += ["", f"# {heading}"] if heading else []
        for section in page:
            lines += section_markdown(section)
    return "\n".join(lines) + "\n"


def section_markdown(section, narrow: bool = False) -> list[str]:
    """One section of the run page under its heading. `narrow`: a half-width pane, where the plan is its summary
    line and tables are a line per row."""
    view = section.view
    if section.key == "advice" and narrow:  # the pane's first words: the answer itself, as its heading
        return [f"# {view.headline}", ""] + [f"*{note}*\n" for note in view.notes] + [f"- {line}" for line in view.lines]
    lines = ["", f"## {section.heading}", ""]
    if section.key == "advice":
        return lines + [f"**{view.headline}**" + "".join(f" ({note})" for note in view.notes), ""] + (
            [view.title.capitalize(), ""] if view.title else []) + [f"- {line}" for line in view.lines]
    if narrow and section.brief:
        return lines + [section.brief]
    return lines + table_markdown(view, narrow, title=section.key not in ("results", "time"))  # headed already


def table_markdown(view, narrow: bool = False, title: bool = True) -> list[str]:
    """A shared view's title, table and notes as Markdown lines. `narrow`: a line per row instead of a table, for a
    half-width pane where eight columns would be cut to "…"; `title` False when a heading says it already."""
    lines = [view.title + ".", ""] if title and view.title else []
    lines += [f"- {line}" for line in view.above] + ([""] if view.above else [])
    if view.columns and narrow:
        lines += [f"- **{row[0]}**: " + " · ".join(f"{col} {value}" for col, value in zip(view.columns[1:], row[1:]))
                  for row in view.rows]
    elif view.columns:
        lines += ["| " + " | ".join(view.columns) + " |",
                  "|" + "".join("---|" if col in TEXT_COLUMNS else "--:|" for col in view.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in view.rows]
    return lines + ([""] if view.columns else []) + [f"- {line}" for line in view.lines + view.notes]

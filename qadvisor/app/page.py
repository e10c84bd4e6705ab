"""The run page: its sections and their order, composed once. The console, the Markdown report and the TUI lay
these sections out, each in its own widgets; none of them picks what to show or in which order."""

from __future__ import annotations

from dataclasses import dataclass

from qadvisor.app import mix_views, plan_views, views
from qadvisor.core.advise.target import target_label
from qadvisor.schemas.export import RunExport

# every section a run page can hold, in the order every face shows them: what the numbers mean for the team first,
# how they were taken after (the advice itself names what bears on its pick)
ORDER = ("hardware", "results", "advice", "mixes", "plan", "target", "ran", "plan_check", "time")


@dataclass
class Section:
    key: str  # one of ORDER: a face that shows a section elsewhere (the TUI's run screen) leaves it out by key
    heading: str  # the report's heading for it
    view: views.TableView
    brief: str = ""  # one line in place of the table, for a face without room for it (the plan's summary)


def run_page(export: RunExport, only: tuple[str, ...] = ORDER) -> list[tuple[str, list[Section]]]:
    """Per hardware kind (one, unnamed, off a cluster): its heading and its sections, those in `only`, in ORDER."""
    return [(heading, [s for s in sections(part) if s.key in only]) for heading, part in views.per_kind(export)]


def sections(export: RunExport) -> list[Section]:
    """One machine's page: what was measured, the advice, the plan and the target advice, then how the methods ran,
    the planner's check against the measured sizes and where the time went; a section with nothing to say is left
    out."""
    page = [Section("hardware", "Hardware", hardware_view(export)),
            Section("results", "Measured results", views.results_view(export))]
    if export.recommendation is not None:
        page.append(Section("advice", "Recommendation", views.recommendation_view(export)))
    mixed = mix_views.mix_view(export)
    if mixed is not None:
        page.append(Section("mixes", "GGUF mixes", mixed))
    if export.plan is not None:
        plan = export.plan
        rec = export.recommendation
        page.append(Section("plan", f"Plan for {plan.model} on {target_label(plan)} (estimates)",
                            plan_views.plan_view(plan), brief=plan_views.plan_summary(plan, rec.method if rec else None)))
    target = views.target_view(export)
    if target is not None:
        page.append(Section("target", target.headline or f"Advice for {export.target.model}", target))
    notes = views.result_notes(export.results)
    if notes:
        page.append(Section("ran", "How methods ran here", views.TableView(title="", columns=[], rows=[], lines=notes)))
    if export.plan_check:
        page.append(Section("plan_check", "Planner check", views.TableView(
            title="predicted from the architecture vs measured here", columns=[], rows=[],
            lines=plan_views.plan_check_lines(export.plan_check))))
    times = views.time_view(export)
    if times.rows:
        page.append(Section("time", "Where the time went", times))
    return page


def hardware_view(export: RunExport) -> views.TableView:
    """The machine the run measured on: its lines, then its backends' table."""
    hw = export.hardware
    view = views.backends_view(hw) if hw.backends else views.TableView(title="", columns=[], rows=[])
    view.title = ""  # the section's heading names the machine; the table's columns say they are its backends
    view.above = [f"{label}: {text}" for label, text in views.hardware_lines(hw)]
    view.above.append(f"Trials ran on: {export.settings.device}")
    return view

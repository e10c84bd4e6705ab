"""Advice from results already measured: the one place a run's recommendations are (re)computed."""

from __future__ import annotations

from qadvisor.core.advisor import advise
from qadvisor.core.target import target_advice
from qadvisor.models.export import RunExport
from qadvisor.models.priorities import Priorities


def readvise(export: RunExport, priorities: Priorities, with_target: bool = False) -> RunExport:
    """The recommendation for the measured model and, when the export has (or `with_target` asks for) advice for
    a planned target, for that too. No measuring."""
    export.priorities = priorities
    export.recommendation = advise(export.results, priorities)
    if export.plan is not None and (with_target or export.target is not None):
        export.target = target_advice(export, export.plan, priorities)
    return export

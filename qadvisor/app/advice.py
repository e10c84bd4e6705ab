"""Advice from results already measured: the one place a run's recommendations are (re)computed."""

from __future__ import annotations

from qadvisor.core.advise.advisor import advise
from qadvisor.core.advise.target import target_advice
from qadvisor.schemas.export import HardwareKind, RunExport
from qadvisor.schemas.priorities import Priorities
from qadvisor.schemas.result import TrialResult


def readvise(export: RunExport, priorities: Priorities, with_target: bool = False) -> RunExport:
    """The recommendation for the measured model and, when the export has (or `with_target` asks for) advice for
    a planned target, for that too. No measuring."""
    export.priorities = priorities
    for kind in export.kinds:  # --cluster: advice per hardware kind, from that kind's results only
        kind.recommendation = advise(kind_results(export, kind.kind), priorities)
        part = kind_export(export, kind)
        if part.plan is not None and (with_target or kind.target is not None):
            kind.target = target_advice(part, part.plan, priorities)
    if export.kinds:
        export.recommendation, export.target = export.kinds[0].recommendation, export.kinds[0].target
        return export
    export.recommendation = advise(export.results, priorities)
    if export.plan is not None and (with_target or export.target is not None):
        export.target = target_advice(export, export.plan, priorities)
    return export


def kind_export(export: RunExport, kind: HardwareKind) -> RunExport:
    """One hardware kind of a --cluster run as a run on one machine: its hardware, results, advice and plan (and that
    kind alone in `kinds`)."""
    return export.model_copy(update={"hardware": kind.hardware, "recommendation": kind.recommendation, "kinds": [kind],
                                     "results": kind_results(export, kind.kind),
                                     # slices measured on the kind, or one plan for a target that is not here
                                     "plan": kind.plan or export.plan,
                                     "target": kind.target,
                                     "settings": export.settings.model_copy(update={"device": kind.kind})})


def kind_results(export: RunExport, kind: str) -> list[TrialResult]:
    """One hardware kind's results, one per method: where several nodes of the kind measured a method, the node with
    the median decode speed stands for it (a result measured on one node, not an average of several)."""
    by_method: dict[str, list[TrialResult]] = {}
    for r in export.results:
        if r.kind == kind:
            by_method.setdefault(r.method, []).append(r)
    chosen = []
    for results in by_method.values():
        ok = sorted((r for r in results if r.status == "ok"), key=lambda r: r.decode_tok_s)
        chosen.append(ok[(len(ok) - 1) // 2] if ok else results[0])
    return chosen

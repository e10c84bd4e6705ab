"""What the faces show, computed once: each face (CLI, TUI, Markdown report) only lays these out in its widgets."""

from __future__ import annotations

from dataclasses import dataclass, field

from qadvisor.core import format as f
from qadvisor.models.events import STEPS
from qadvisor.models.export import RunExport


@dataclass
class TableView:
    title: str
    columns: list[str]
    rows: list[list[str]]
    headline: str = ""
    lines: list[str] = field(default_factory=list)  # reasons, comparisons
    notes: list[str] = field(default_factory=list)  # what is left out, sources


def target_view(export: RunExport) -> TableView | None:
    """The advice for the model the team will deploy; every column says what kind of number it is."""
    t = export.target
    if t is None:
        return None
    fits = {r.method: r.fits for r in export.plan.plans} if export.plan else {}
    rows = [[r.method, f"{r.size_bytes / 2**30:.1f}", f"{-r.size_reduction_pct:+.0f}%",
             f.pm(r.decode_tok_s, r.decode_tok_s_spread, 2), f.num(r.prefill_tok_s),
             "yes" if fits.get(r.method) else "no", f.signed_pct(r.ppl_delta_pct), f.sci(r.kl_mean)] for r in t.results]
    view = TableView(
        title=f"For {t.model} on {t.target}: size estimated by the planner, decode projected from slices measured "
              f"here (or the bound for a GPU not here), accuracy measured on {export.model.name}",
        columns=["method", "size GiB", "vs bf16", "decode tok/s", "prefill tok/s", "fits", "ΔPPL", "KL"], rows=rows)
    if t.recommendation is not None:
        view.headline = f"Recommendation for {t.model}: {t.recommendation.headline}"
        view.lines = t.recommendation.reasons + t.comparison
    view.notes = [f"not in the {t.model} advice: {m}: {why}" for m, why in t.left_out.items()]
    if t.published:
        p = t.published
        view.notes.append(f"published by Qwen for {p['model']} ({', '.join(p['columns'])}): " + "; ".join(
            f"{name} {' / '.join(f'{v:g}' for v in row)}" for name, row in p["rows"].items()))
        view.notes.append(f"{p['note']}. Source: {p['source']}")
    return view


def time_view(export: RunExport) -> TableView:
    """Where the run's time went, per method and step (seconds measured in this run). A method whose quantized model
    came from the cache shows "cached" for quantize; its quantize time from the run that made it is in brackets."""
    measured = [r for r in export.results if r.status == "ok" and r.step_s]
    rows = []
    for r in measured:
        steps = [f"{r.step_s[name]:.1f}" if name in r.step_s else "—" for name in STEPS]
        if r.cached:
            steps[STEPS.index("quantize")] = f"cached ({r.quantize_s:.1f})" if r.quantize_s is not None else "cached"
        rows.append([r.method, f.num(r.start_s), *steps, f"{_trial_s(r):.1f}"])
    ref = (f"reference step {export.reference_s:.1f} s" if export.reference_s is not None
           else "reference from the cache")
    view = TableView(title="Where the time went (seconds in this run)", columns=["method", "start", *STEPS, "total"],
                     rows=rows)
    view.notes = ["start = the trial process's start and the imports before its first step; quantize \"cached\": the "
                  "model came from the cache (in brackets, how long quantizing took when it was made)",
                  f"{ref}; trials {sum(_trial_s(r) for r in measured):.0f} s in all, "
                  f"{sum(r.cached for r in measured)} of {len(measured)} quantized models from the cache"
                  + ("" if export.settings.reuse_cache else " (--no-cache: the cache was refreshed)")]
    return view


def _trial_s(r) -> float:
    """A trial's seconds from its process's start to its result."""
    return (r.start_s or 0.0) + (r.total_s or 0.0)

"""What the faces show, computed once: each face (CLI, TUI, Markdown report) only lays these out in its widgets."""

from __future__ import annotations

from dataclasses import dataclass, field

from qadvisor.core import format as f
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

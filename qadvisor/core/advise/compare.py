"""Two saved runs side by side: the same methods on two machines (or two models), and whether the advice differs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from qadvisor.core.advise.advisor import advise
from qadvisor.core.hardware import hardware_kind
from qadvisor.schemas.export import RunExport
from qadvisor.schemas.priorities import Priorities, load_profile
from qadvisor.schemas.recommendation import Recommendation
from qadvisor.schemas.result import TrialResult


@dataclass
class MethodPair:
    method: str
    a: TrialResult
    b: TrialResult

    @property
    def decode_ratio(self) -> float:
        return self.b.decode_tok_s / self.a.decode_tok_s


@dataclass
class Comparison:
    pairs: list[MethodPair]
    only_in_a: list[str]
    only_in_b: list[str]
    priorities: Priorities
    advice_a: Recommendation
    advice_b: Recommendation
    # the same kind of machine (core.hardware.hardware_kind), model and generation lengths, each method on the same
    # device: nothing but the runs themselves differs
    same_setup: bool = False

    def decode_ratios(self) -> tuple[float, float, float] | None:
        """Lowest, median and highest B/A decode ratio over the methods in both runs."""
        ratios = sorted(p.decode_ratio for p in self.pairs)
        return (ratios[0], statistics.median(ratios), ratios[-1]) if ratios else None

    @property
    def same_advice(self) -> bool:
        return (self.advice_a.method, self.advice_a.archetype) == (self.advice_b.method, self.advice_b.archetype)


def compare(first: RunExport, second: RunExport) -> Comparison:
    """Advice on both runs uses the same priorities (the first run's, else the second's, else balanced)."""
    a = {r.method: r for r in first.results if r.status == "ok"}
    b = {r.method: r for r in second.results if r.status == "ok"}
    priorities = first.priorities or second.priorities or load_profile("balanced")
    pairs = [MethodPair(m, a[m], b[m]) for m in a if m in b]
    return Comparison(
        pairs=pairs, only_in_a=sorted(set(a) - set(b)), only_in_b=sorted(set(b) - set(a)), priorities=priorities,
        advice_a=advise(first.results, priorities), advice_b=advise(second.results, priorities),
        same_setup=_setup(first) == _setup(second) and all(p.a.device == p.b.device for p in pairs),
    )


def _setup(export: RunExport) -> tuple:
    """What decides a run's speeds besides the run itself: the kind of machine (as a cluster groups its nodes), the
    model and the generation lengths."""
    m, s = export.model, export.settings
    return hardware_kind(export.hardware), m.name, m.params, s.prompt_tokens, s.decode_tokens

"""The advisor's answer, as saved in exports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from qadvisor.schemas.priorities import Priorities


def label_of(kinds) -> str:
    """An archetype set as the faces write it: A, B, C, or A/B and B/C where a method is on both sides."""
    return "/".join(sorted(kinds))


class MethodScore(BaseModel):
    total: float
    storage: float  # each part in [0, 1], 1 = best among the candidates
    latency: float
    accuracy: float
    archetype: Literal["A", "B", "C"]


class Recommendation(BaseModel):
    archetype: Literal["A", "B", "C"] | None = None
    method: str | None = None
    reasons: list[str] = []
    runner_up: str | None = None
    scores: dict[str, MethodScore] = {}
    archetypes: dict[str, Literal["A", "B", "C"]] = {}  # one label each (A before B)
    fits: dict[str, list[Literal["A", "B", "C"]]] = {}  # every archetype each method qualifies for
    baselines: list[str] = []  # unquantized (no smaller than bf16): C by the numbers, never a balanced pick

    def label(self, method: str) -> str:
        """A method's type as the tables show it: its archetypes (B/C: on both sides within the run's noise), `base`
        for an unquantized baseline, ✗ ruled out."""
        kind = self.archetypes.get(method)
        if kind is None:
            return "✗"
        if method in self.baselines:
            return "base"
        return label_of(self.fits.get(method) or [kind])
    pareto_front: list[str] = []
    team: Literal["A", "B", "C"] | None = None  # the archetype the priorities asked for; None: accuracy-bound
    flip: str = ""  # what change of priorities would change the choice
    ruled_out: dict[str, list[str]] = {}  # method → the limits it misses
    closest: str | None = None  # when nothing meets the limits
    priorities: Priorities | None = None
    device: str = ""

    @property
    def headline(self) -> str:
        if self.method:
            return f"Tool {self.archetype} — {self.method}"
        return "no recommendation" + (f" (closest: {self.closest})" if self.closest else "")

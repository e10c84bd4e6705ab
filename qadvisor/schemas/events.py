"""What the runner yields. The TUI turns each into a Message; `--auto` prints them."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, Field

from qadvisor.schemas.result import TrialResult

# A trial's steps, in order: its progress events name them, the faces count them and show the time each took.
STEPS = ("load", "quantize", "save", "reload", "evaluate", "benchmark")


# Where an event comes from: the fp32 reference, a method's trial, a slice of the --plan-for model (its building,
# a method at one depth, their timing side by side) or the planned model's accuracy streamed layer by layer. Faces route
# by it; the method string is for the eye only.
Stage = Literal["reference", "trial", "slice", "stream"]


class Staged(BaseModel):
    stage: Stage = "trial"
    node: str | None = None  # --cluster: the node it ran on
    depth: int | None = None  # a slice's decoder layers (None: the whole model)


class Progress(Staged):
    type: Literal["progress"] = "progress"
    method: str
    step: str  # one of STEPS
    fraction: float | None = None  # within the step, when known
    message: str = ""


class Metric(Staged):
    type: Literal["metric"] = "metric"
    method: str
    name: str  # a TrialResult field name
    value: float


class Result(Staged):
    type: Literal["result"] = "result"
    result: TrialResult


class Error(Staged):
    type: Literal["error"] = "error"
    method: str
    message: str


Event = Union[Progress, Metric, Result, Error]


class EventEnvelope(BaseModel):
    """Wire format between the trial process and the runner: one JSON line each."""

    event: Event = Field(discriminator="type")

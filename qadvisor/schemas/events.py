"""What the runner yields. The TUI turns each into a Message; `--auto` prints them."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, Field

from qadvisor.schemas.result import TrialResult


# A trial's steps, in order: its progress events name them, the faces count them and show the time each took.
STEPS = ("load", "quantize", "save", "reload", "evaluate", "benchmark")


class Progress(BaseModel):
    type: Literal["progress"] = "progress"
    method: str
    step: str  # one of STEPS
    fraction: float | None = None  # within the step, when known
    message: str = ""


class Metric(BaseModel):
    type: Literal["metric"] = "metric"
    method: str
    name: str  # a TrialResult field name
    value: float


class Result(BaseModel):
    type: Literal["result"] = "result"
    result: TrialResult


class Error(BaseModel):
    type: Literal["error"] = "error"
    method: str
    message: str


Event = Union[Progress, Metric, Result, Error]


class EventEnvelope(BaseModel):
    """Wire format between the trial process and the runner: one JSON line each."""

    event: Event = Field(discriminator="type")

"""The one face every measuring run shows its callers, whoever measures: `runner.Run` on this machine,
`core.cluster.driver.ClusterRun` on the nodes of a Ray cluster, and the TUI tests' replay of recorded events.
`app.auto.AutoSession` holds one and adds the plan and streaming of the --plan-for model after it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

from qadvisor.schemas.events import Event
from qadvisor.schemas.export import RunExport


@runtime_checkable
class Session(Protocol):
    recipes: list  # the methods to measure, as parsed recipes (a KV stack is one recipe)
    model_path: Path  # the model the run is about (a checkpoint measured without its reference: the checkpoint)
    device_label: str  # where it is measured, in words: the table's title
    reference: object | None  # the fp32 reference once its step finished; None before (nothing to export)

    def trial_names(self) -> list[str]:
        """What each trial's events and result are called, one per result `events()` yields."""
        ...

    def events(self, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Measure, yielding progress, metrics and one result per trial; `cancel` stops after the current step."""
        ...

    def export(self) -> RunExport:
        """What finished so far, as the saved run (not yet advised)."""
        ...

"""Every event the UI reacts to, as a Textual Message (posted from the run worker's thread)."""

from __future__ import annotations

from textual.message import Message

from qadvisor.schemas.events import Event
from qadvisor.schemas.export import RunExport


class TrialEvent(Message):
    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class RunFinished(Message):
    def __init__(self, export: RunExport | None, error: str = "") -> None:
        super().__init__()
        self.export = export
        self.error = error

"""The one error type the CLI turns into a single clear line and exit code 2."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping


class UserError(Exception):
    """Bad input from the user: a missing model, a malformed file, an unknown method. `field` names the input it is
    about (an option's name as RunOptions and PriorityOptions spell it: `max_size`, `plan_for`; `mix_budget` and `kv`
    for the parts of a method name the TUI's form takes apart), so a face points at it without reading the words back.
    None: about no one input (the machine, a file the user did not name)."""

    def __init__(self, message: str = "", field: str | None = None):
        super().__init__(message)
        self.field = field


@contextmanager
def about(field: str, renamed: Mapping[str, str] | None = None) -> Iterator[None]:
    """A UserError raised inside is about `field`, unless it names its own; `renamed` maps the field names of an inner
    step's options to the caller's (PlanOptions' `model` is `plan_for` to a session)."""
    try:
        yield
    except UserError as exc:
        exc.field = (renamed or {}).get(exc.field, exc.field) if exc.field else field
        raise

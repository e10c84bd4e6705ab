"""Form fields the screens share."""

from __future__ import annotations

from textual.widgets import Input


class NumberInput(Input):
    """A number field that says so when it refuses a character (Textual drops it without a word)."""

    def __init__(self, value: str | None = None, *, label: str, integer: bool = False, **kwargs) -> None:
        super().__init__(value, type="integer" if integer else "number", **kwargs)
        self.label = label  # as the form names the field
        self.integer = integer

    def restricted(self) -> None:
        self.add_class("refused")
        self.set_timer(1.5, lambda: self.remove_class("refused"))
        kind = "a whole number" if self.integer else "a number"
        self.notify(f"{self.label}: {kind} only", severity="warning", timeout=3)

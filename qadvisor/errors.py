"""The one error type the CLI turns into a single clear line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a missing model, a malformed file, an unknown method. `field` names the input it is
    about (an option's name as RunOptions and PriorityOptions spell it: `max_size`, `plan_for`), where one does, so a
    face can point at it without reading the words back."""

    def __init__(self, message: str = "", field: str | None = None):
        super().__init__(message)
        self.field = field

"""What the `llmint8` command does, as functions: `quantize`, `inspect`, `evaluate`, `bench`.

Each raises `UsageError` (or one of llmint8's named errors) for input it cannot use; the command
turns those into one line on stderr and exit code 2.
"""


class UsageError(ValueError):
    """An argument or input the command cannot use (the message names it)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a command that writes: the message says what is true of the destination
    (written in full, left as it was, or never created)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome

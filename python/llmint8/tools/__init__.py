"""What the `llmint8` command does, as functions with the command's options as arguments; the
public names are on the package: `llmint8.quantize_checkpoint`, `llmint8.inspect_checkpoint`,
`llmint8.evaluate_model`, `llmint8.run_bench`.

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

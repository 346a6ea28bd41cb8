"""The two kinds of failure ci-eval tells apart: bad input, and broken infrastructure."""


class InputError(Exception):
    """Something the user gave is wrong; the message is one line that says what to do."""


class InfraError(Exception):
    """The machinery failed (Docker, the model server), not the model: retried, then `error`."""

    def __init__(self, message: str, kind: str = "infra", transient: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.transient = transient

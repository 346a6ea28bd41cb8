"""The two kinds of failure ci-eval tells apart: bad input, and broken infrastructure."""

from __future__ import annotations

from pydantic import ValidationError


class InputError(Exception):
    """Something the user gave is wrong; the message is one line that says what to do."""


class InfraError(Exception):
    """The machinery failed (Docker, the model server), not the model: retried, then `error`."""

    def __init__(self, message: str, kind: str = "infra", transient: bool = True) -> None:
        # kind: a contracts.status.ErrorKind (a str here, so that this bottom module imports nothing of ours)
        super().__init__(message)
        self.kind = kind
        self.transient = transient


def first_error(exc: ValidationError) -> tuple[str, str]:
    """A pydantic error's first problem as (where, what): `field.sub`, and its message."""
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, ")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """Any exception as one short line for an error message (a pydantic one as `where: what`)."""
    if isinstance(exc, ValidationError):
        where, what = first_error(exc)
        text = f"{where}: {what}" if where else what
    else:
        text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__

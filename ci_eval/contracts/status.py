"""The words an outcome is said in, everywhere: the one Status of an instance and whether it is a
verdict on the model, and the closed sets of why an attempt ended (ErrorKind, ExitReason).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class Status(StrEnum):
    """What became of an instance, one word in results.jsonl, report.json, JUnit and the summary."""

    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    EMPTY_PATCH = "empty_patch"
    PATCH_FAILED = "patch_failed"
    # The tests hanging under the patch: the patch's doing, so a model failure, never retried.
    # Infrastructure running out of time (a stuck pull, a stuck server) is an `error`.
    TIMEOUT = "timeout"
    ERROR = "error"
    # The agent's wall clock cut the attempt before its step limit: that says how fast the runner
    # was, not what the model can do. No verdict, and not retried: the same runner would cut it again.
    TOO_SLOW = "too_slow"
    # The shard's deadline stopped the attempt (or it never started): the next run of the shard does it.
    NOT_ATTEMPTED = "not_attempted"
    # Aggregation only: the instance's only result line is damaged.
    UNREADABLE = "unreadable"

    @property
    def verdict(self) -> bool | None:
        """True resolved, False a model failure, None no verdict on the model."""
        return True if self is Status.RESOLVED else False if self in MODEL_FAILURES else None


MODEL_FAILURES = (Status.UNRESOLVED, Status.EMPTY_PATCH, Status.PATCH_FAILED, Status.TIMEOUT)
INFRA_FAILURES = (Status.ERROR,)
# Without a model verdict: nothing can be said of the model from these.
NO_VERDICT = (*INFRA_FAILURES, Status.TOO_SLOW, Status.NOT_ATTEMPTED, Status.UNREADABLE)


class ErrorKind(StrEnum):
    """Why an attempt ended without a verdict, or with the tests timing out: one word each."""

    DEADLINE = "deadline"  # the shard's --deadline-minutes stopped it
    TIME_LIMIT = "time_limit"  # the agent's wall clock cut it
    TIMEOUT = "timeout"  # the tests hung under the patch
    INSTANCE_TIMEOUT = "instance_timeout"  # the machinery was stuck past --instance-timeout
    MODEL = "model"  # the model server failed after retries: it may be down
    MODEL_REFUSED = "model_refused"  # it answered, and refused the request
    CONTEXT = "context"  # --context-window cannot hold the prompts
    DOCKER = "docker"
    IMAGE = "image"
    SANDBOX = "sandbox"
    OOM = "oom"  # the memory limit killed the tests under the patch
    INFRA = "infra"  # any other failure of the machinery
    INTERNAL = "internal"  # a bug of ci-eval's, its traceback in the attempt's logs


# What each ending makes of an attempt's status: the one table from an outcome to a Record.
# The tests hanging under the patch is the patch's doing; the shard's deadline leaves the attempt
# for the next run; the agent's wall clock says how fast the runner was; the rest is the machinery.
STATUS_OF: dict[ErrorKind, Status] = {
    ErrorKind.DEADLINE: Status.NOT_ATTEMPTED, ErrorKind.TIME_LIMIT: Status.TOO_SLOW,
    ErrorKind.TIMEOUT: Status.TIMEOUT,
    # The memory limit killing the tests under the patch: the patch's doing, as a hang is (the
    # same tests fit under the gold patch); never a hiding place from a verdict.
    ErrorKind.OOM: Status.UNRESOLVED,
    **{kind: Status.ERROR for kind in (
        ErrorKind.INSTANCE_TIMEOUT, ErrorKind.MODEL, ErrorKind.MODEL_REFUSED, ErrorKind.CONTEXT, ErrorKind.DOCKER,
        ErrorKind.IMAGE, ErrorKind.SANDBOX, ErrorKind.INFRA, ErrorKind.INTERNAL)},
}


class ExitReason(StrEnum):
    """Why the agent stopped."""

    SUBMITTED = "submitted"
    STEP_LIMIT = "step_limit"
    TOKEN_BUDGET = "token_budget"
    TIME_LIMIT = "time_limit"
    FORMAT_ERRORS = "format_errors"  # too many replies in a row without one command
    PATCH_TOO_LARGE = "patch_too_large"
    INTERRUPTED = "interrupted"  # an exception or a cancellation ended it
    AGENT_FAILED = "agent_failed"  # an agent command exited with a status other than 0


class ErrorInfo(BaseModel):
    """Why an instance has no verdict, or failed: its kind and one line."""

    kind: ErrorKind
    message: str

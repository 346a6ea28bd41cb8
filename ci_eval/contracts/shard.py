"""A shard folder's files: manifest.json, results.jsonl (one Record a line) and each attempt's
trajectory.json.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ci_eval.contracts.older import renamed
from ci_eval.contracts.plan import SampleDesign
from ci_eval.contracts.status import INFRA_FAILURES, ErrorInfo, ErrorKind, ExitReason, Status

# 2: a repeat of an attempt is an epoch (`samples`, `sample` before); version 1 files still read.
MANIFEST_VERSION = 2
TRAJECTORY_VERSION = 2


class ShardInfo(BaseModel):
    index: int = Field(ge=0)
    of: int = Field(ge=1)
    run_attempt: int = Field(ge=1)  # GitHub's run attempt that wrote it (1 off GitHub)


class Manifest(BaseModel):
    """manifest.json: who ran this shard, with what, and the whole plan (so that aggregation can
    name the instances of a shard whose artifact never arrived)."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = MANIFEST_VERSION
    identity: dict[str, Any]  # what a result depends on; shards of one run agree on all of it
    config: dict[str, Any] = Field(default_factory=dict)
    shard: ShardInfo
    sandbox: str = ""
    epochs: int = Field(default=1, ge=1)
    planned: list[str]
    plan: list[list[str]]
    sample: SampleDesign | None = None  # the plan's sample design, carried to the report
    # What produced the results beyond ci-eval's settings, as the model server said it: its kind
    # and version, the model's digest. Recorded, and compared with a baseline's (like with like).
    environment: dict[str, str | None] = Field(default_factory=dict)
    written_at: str = ""

    @model_validator(mode="before")
    @classmethod
    def _older_names(cls, data: Any) -> Any:
        """Manifests of earlier versions still read: the version field was `schema` and the GitHub
        run attempt the shard's `attempt` in early 0.1.0 builds; the epochs were `samples` in 1."""
        if not isinstance(data, dict):
            return data
        data = renamed(data, {"schema": "schema_version"})
        data = renamed(data, {"samples": "epochs"}, MANIFEST_VERSION)
        shard = data.get("shard")
        if isinstance(shard, dict) and "attempt" in shard and "run_attempt" not in shard:
            data["shard"] = {**{k: v for k, v in shard.items() if k != "attempt"}, "run_attempt": shard["attempt"]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if len(self.plan) != self.shard.of or self.shard.index >= self.shard.of:
            raise ValueError(f"shard {self.shard.index} of {self.shard.of} does not fit a plan of {len(self.plan)}")
        if self.plan[self.shard.index] != self.planned:
            raise ValueError("its planned instances are not its shard of the plan")
        return self


class Outcome(BaseModel):
    success: list[str] = Field(default_factory=list)
    failure: list[str] = Field(default_factory=list)


class Tests(BaseModel):
    FAIL_TO_PASS: Outcome = Field(default_factory=Outcome)
    PASS_TO_PASS: Outcome = Field(default_factory=Outcome)


class AgentStats(BaseModel):
    steps: int = 0
    exit_reason: ExitReason | None = None
    format_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None  # of prompt_tokens, as the server reported (None: it never said)
    model_seconds: float = 0.0
    # The text of every request, and how much of it repeated the start of the request before:
    # what a prefix cache can reuse, measured on our side whatever the server reports.
    sent_chars: int = 0
    repeated_chars: int = 0
    compactions: int = 0
    # Model calls that processed their whole prompt again (Usage.reprocessed): a prompt cache
    # that missed, seen in the server's cached tokens or, where it says none, in the call's speed.
    reprocessed_steps: int = 0


class Timings(BaseModel):
    image: float = 0.0
    agent: float = 0.0
    eval: float = 0.0  # the eval script itself: what is left of `total` is ci-eval's overhead
    total: float = 0.0


class Step(BaseModel):
    """One command of an agent run, with what the model was shown of its output."""

    step: int
    command: str
    returncode: int
    timed_out: bool
    seconds: float
    model_seconds: float
    output: str


class ModelCall(BaseModel):
    prompt_tokens: int
    cached_tokens: int | None = None  # as the server reported
    completion_tokens: int
    seconds: float
    prompt_seconds: float | None = None  # the call's seconds less its generation (Usage.reprocessed)
    reprocessed: bool | None = None  # it processed its whole prompt again (None: the first call)


class ModelUsage(BaseModel):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached_tokens: int | None = None
    per_call: list[ModelCall] = Field(default_factory=list)


class Trajectory(BaseModel):
    """trajectory.json: one agent run whole, saying what made it (as mini-swe-agent's do): the
    conversation, each command, the model's costs, the patch."""

    schema_version: int = TRAJECTORY_VERSION
    ci_eval_version: str = ""
    config_hash: str = ""  # the run's (the manifest's); empty off a shard
    instance_id: str
    epoch: int = 0
    attempt: int = 1
    patch: str = ""
    stats: AgentStats = Field(default_factory=AgentStats)
    usage: ModelUsage = Field(default_factory=ModelUsage)
    steps: list[Step] = Field(default_factory=list)
    messages: list[dict[str, str]] = Field(default_factory=list)
    agent_returncode: int | None = None  # an agent command's exit status (the command seam)

    @model_validator(mode="before")
    @classmethod
    def _older_names(cls, data: Any) -> Any:
        return renamed(data, {"sample": "epoch"}, TRAJECTORY_VERSION)


class Record(BaseModel):
    """One line of results.jsonl: one finished attempt at one (instance, epoch)."""

    instance_id: str
    repo: str
    epoch: int = 0
    status: Status
    error: ErrorInfo | None = None
    patch: str = ""
    tests: Tests = Field(default_factory=Tests)
    agent: AgentStats = Field(default_factory=AgentStats)
    timings: Timings = Field(default_factory=Timings)
    attempt: int = 1
    started_at: str
    finished_at: str
    config_hash: str | None = None  # of the run that wrote it (stamped by the store)
    suspicious: list[str] = Field(default_factory=list)  # "path: why" of a patch that may game the grader

    @model_validator(mode="before")
    @classmethod
    def _older_names(cls, data: Any) -> Any:
        return renamed(data, {"sample": "epoch", "run": "config_hash"})  # lines written before schema version 2

    @property
    def key(self) -> tuple[str, int]:
        return (self.instance_id, self.epoch)

    @property
    def is_infra_failure(self) -> bool:
        return self.status in INFRA_FAILURES

    @property
    def model_server_failed(self) -> bool:
        """The model server failed it after the client's retries: it may be down (a request it
        refused is kind `model_refused`, and the server is up)."""
        return self.error is not None and self.error.kind == ErrorKind.MODEL


class UnreadableLine(BaseModel):
    """A line of results.jsonl (line 0: the whole file) that could not be read: said, never dropped."""

    file: str
    line: int
    reason: str
    instance_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}" + (f" ({self.instance_id})" if self.instance_id else "")

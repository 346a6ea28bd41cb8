"""report.json: what a merged run amounts to, with its comparison and verdict when judged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator

from ci_eval.contracts.older import renamed
from ci_eval.contracts.plan import SampleDesign
from ci_eval.contracts.shard import UnreadableLine
from ci_eval.contracts.status import ErrorInfo, ExitReason, Status
from ci_eval.untrusted import UntrustedText

REPORT_VERSION = 2  # 2: a repeat of an attempt is an epoch (`samples` before); version 1 still reads
REPORT = "report.json"  # in the aggregate's folder, beside junit.xml and the summaries


class InstanceResult(BaseModel):
    repo: str
    status: Status
    epochs: int = Field(default=0, ge=0)
    resolved_epochs: int = Field(default=0, ge=0)
    time: float = 0.0
    error: ErrorInfo | None = None
    failing_tests: list[UntrustedText] = Field(default_factory=list)
    attempt: int | None = None
    exit_reason: ExitReason | None = None
    steps: int = 0
    tokens: int = 0
    log_tail: UntrustedText = ""
    suspicious: list[UntrustedText] = Field(default_factory=list)  # what its patch touches of test collection

    @model_validator(mode="before")
    @classmethod
    def _older_names(cls, data: Any) -> Any:
        return renamed(data, {"samples": "epochs", "resolved_samples": "resolved_epochs"})

    @model_validator(mode="after")
    def _counts(self) -> InstanceResult:
        # A report is read from an artifact anyone's run may have written: its counts must add up.
        if self.resolved_epochs > self.epochs:
            raise ValueError(f"{self.resolved_epochs} resolved epochs of {self.epochs}")
        if self.epochs == 1 and self.status.verdict is not None and (
                self.resolved_epochs == 1) != (self.status == Status.RESOLVED):
            raise ValueError(f"status {self.status} with {self.resolved_epochs} of 1 epoch resolved")
        return self


class ShardsSeen(BaseModel):
    of: int
    present: list[int]
    missing: list[int]
    # the GitHub run attempt of each shard kept (`attempts` in the reports of earlier 0.1.0 builds)
    run_attempts: dict[str, int] = Field(validation_alias=AliasChoices("run_attempts", "attempts"))


class Totals(BaseModel):
    planned: int
    attempted: int
    by_status: dict[Status, int]


class ResolveRate(BaseModel):
    resolved: int = Field(ge=0)
    planned: int = Field(ge=0)
    rate: float = Field(ge=0, le=1)
    ci95: tuple[float, float]

    @model_validator(mode="after")
    def _consistent(self) -> ResolveRate:
        if self.resolved > self.planned or not 0 <= self.ci95[0] <= self.ci95[1] <= 1:
            raise ValueError(f"{self.resolved} resolved of {self.planned} planned, interval {self.ci95}")
        return self


class InfraFailures(BaseModel):
    count: int
    instances: list[str]


class RepoResult(BaseModel):
    planned: int
    resolved: int
    rate: float


class UsageTotals(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_seconds: float = 0.0
    # Prompt reuse: the share of request text that repeated the start of the request before
    # (what a prefix cache can reuse, measured by ci-eval), and the share of prompt tokens the
    # server said it took from its cache (None when it never said: Ollama does not).
    repeated_prefix_share: float | None = None
    cached_tokens: int | None = None
    cached_share: float | None = None
    reprocessed_steps: int = 0  # model calls that processed their whole prompt again
    reprocessed_instances: list[str] = Field(default_factory=list)  # where, most first
    agent_seconds: float = 0.0
    eval_seconds: float = 0.0
    total_seconds: float = 0.0


class BaselineTries(BaseModel):
    """An instance's baseline: `tries` runs judged it, and their shares resolved add up to `resolved`."""

    resolved: float = Field(ge=0)
    tries: int = Field(ge=0)


class SetAside(BaseModel):
    """A baseline run (1 the oldest) unlike this run, and in what."""

    run: int
    why: UntrustedText  # names what a baseline report says it was made with


class FullSetChange(BaseModel):
    """The full set's resolve rate and its change, estimated from the sample (stratified)."""

    base_rate: float  # of the full set, over the baseline history
    rate: float  # estimated for this run
    change: float
    ci95: tuple[float, float]  # of the change
    sampled: bool  # False: the whole set was run, no sampling error


class HistoryPoint(BaseModel):
    label: str
    rate: float  # on the compared instances that run judged
    judged: int


class Comparison(BaseModel):
    """This run against the baseline history, paired over the instances with a model verdict on
    both sides (resolved or a model failure); the rest cannot say whether the model got better."""

    baseline_runs: int  # the runs like this one, which the test uses
    set_aside: list[SetAside] = Field(default_factory=list)
    compared: int
    push: int = 1  # which run of its pull request this is
    alpha_spent: float = 0.05  # the alpha this push may spend (alpha 6 / (pi^2 push^2))
    base_rate: float  # the baseline's frequency over the compared instances
    new_rate: float  # this run's rate over the same instances
    resolved: int  # this run's resolves (over its tries) on them
    tries: int
    expected: float  # what the history predicts for `resolved` if nothing changed
    test: str
    alpha: float
    p_worse: float  # one-sided: this few resolves or fewer
    p_better: float  # this many or more
    p_worse_best_case: float  # counting the instances without a verdict here as resolved
    p_worse_worst_case: float = 1.0  # counting them as failed
    overdispersion: float = 1.0  # how much more the baseline runs vary together than independent outcomes
    p_disagree: float = 1.0  # the chance of a disagreement among the baseline runs this large
    no_verdict_rate_base: float = 0.0  # of the instances both planned, ended without a verdict
    no_verdict_rate_new: float = 0.0
    p_lost_verdicts: float = 1.0  # one-sided: this many without a verdict or more, if nothing changed
    detectable_drop: float | None  # relative: flagged with 80% probability (None: no drop is)
    detectable_points: float | None  # the same, in points of the full set's resolve rate
    power: dict[str, float] = Field(default_factory=dict)  # relative drop -> the chance it is flagged
    full_set: FullSetChange | None = None
    frequencies: dict[str, BaselineTries] = Field(default_factory=dict)  # of the compared instances
    newly_failing: list[str] = Field(default_factory=list)  # resolved in most baseline tries, failed here
    newly_resolved: list[str] = Field(default_factory=list)  # failed in most baseline tries, resolved here
    no_verdict_new: list[str] = Field(default_factory=list)
    no_verdict_base: list[str] = Field(default_factory=list)
    only_in_one: list[str] = Field(default_factory=list)
    whole_run_base: ResolveRate | None = None  # the newest baseline run, over all it planned
    history: list[HistoryPoint] = Field(default_factory=list)

    @property
    def delta(self) -> float:
        return self.new_rate - self.base_rate


Cause = Literal["", "test", "limit", "lost_verdicts", "lack_of_data", "unstable_history"]


class Verdict(BaseModel):
    word: Literal["pass", "regression", "inconclusive"]
    # Why, for all but a pass: the test, an explicit limit, verdicts the run lost, too little data,
    # or a history whose runs disagree among themselves.
    cause: Cause = ""
    reasons: list[str] = Field(default_factory=list)
    better: bool = False  # significantly more resolves than the history predicts

    @property
    def regression(self) -> bool:
        return self.word == "regression"

    @property
    def exit_code(self) -> int:
        if self.word == "inconclusive" and self.cause == "lost_verdicts":
            return LOST_VERDICTS_EXIT
        return EXIT_CODES[self.word]


EXIT_CODES = {"pass": 0, "regression": 1, "inconclusive": 3}  # 2 is bad input
LOST_VERDICTS_EXIT = 4  # inconclusive because the run lost verdicts, not for lack of data


class Report(BaseModel):
    """report.json: what a merged run amounts to."""

    schema_version: int = REPORT_VERSION
    identity: dict[str, Any]
    shards: ShardsSeen
    totals: Totals
    resolve_rate: ResolveRate
    model_failures: dict[Status, int]
    infrastructure_failures: InfraFailures
    per_repo: dict[str, RepoResult]
    no_verdict: list[str] = Field(default_factory=list)
    unreadable: list[UnreadableLine] = Field(default_factory=list)
    usage: UsageTotals
    epochs: int = 1
    warnings: list[UntrustedText] = Field(default_factory=list)
    instances: dict[str, InstanceResult]
    pass_at_k: dict[str, float] | None = None
    suspicious: list[str] = Field(default_factory=list)  # instances whose patch may game the grader
    sample: SampleDesign | None = None  # how the run's instances were drawn from the full set
    environment: dict[str, str | None] = Field(default_factory=dict)  # the model server's kind, version, digest
    finished_at: str = ""  # the last record's end: orders a baseline history
    comparison: Comparison | None = None  # against the baseline history, when there was one
    verdict: Verdict | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_names(cls, data: Any) -> Any:
        return renamed(data, {"samples": "epochs"}, REPORT_VERSION)

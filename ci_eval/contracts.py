"""What crosses a job boundary, typed: the plan job's plan.json, the shard's manifest.json and
results.jsonl (one Record a line), each agent run's trajectory.json, and the run's report.json;
the one Status word that an instance's outcome is everywhere, and the closed sets of words for
why an attempt ended (ErrorKind, ExitReason).

Plan, manifest, trajectory and report carry one version field, `schema_version`; the JSON Schemas
of all five are generated into schemas/ (`python -m ci_eval.contracts`) and a test keeps them current.
Reading any of them goes through its model, so a file of another shape is one clear error.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from ci_eval.errors import InputError, one_line
from ci_eval.instances import Instance
from ci_eval.untrusted import UntrustedText

PLAN_VERSION = 1
MANIFEST_VERSION = 1
TRAJECTORY_VERSION = 1
REPORT_VERSION = 1
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
Contract = TypeVar("Contract", bound=BaseModel)


class Stratum(BaseModel):
    """One stratum of a sample: how many instances of the full set it holds (N_h), which of them
    were drawn (n_h of them), and the spread of outcomes its allocation assumed."""

    name: UntrustedText  # it rides in artifacts: shown only escaped
    population: int = Field(ge=1)
    chosen: list[str]
    sd: float = 0.0
    weight: float = 1.0  # N_h / N: its share of the full set, in the stratified estimate


class SampleDesign(BaseModel):
    """How a run's instances were drawn from the full set, so that a report can estimate the full
    set's resolve rate and its change (a stratified estimator), not only the sample's."""

    kind: Literal["all", "random", "informative"]
    seed: int = 0
    population: int = Field(ge=0)  # the full set the sample stands for
    strata: list[Stratum]
    baseline_runs: int = 0  # the history an informative sample was drawn from


class Plan(BaseModel):
    """plan.json: the plan made once by the plan job; every shard runs from it, so no shard
    reloads (or re-plans) the dataset and all of them agree on what they run."""

    schema_version: int = PLAN_VERSION
    dataset: str
    split: str
    revision: str | None = None
    dataset_fingerprint: str  # of the whole dataset the instances were chosen from
    shards: list[list[str]]
    costs: dict[str, float]
    instances: list[Instance]  # the chosen ones, whole, in dataset order
    sample: SampleDesign | None = None  # how they were drawn (None: a plan older than the field)

    @property
    def of(self) -> int:
        return len(self.shards)

    @model_validator(mode="after")
    def _covering(self) -> Plan:
        if sorted(i for ids in self.shards for i in ids) != sorted(i.instance_id for i in self.instances):
            raise ValueError("its shards do not cover its instances exactly once")
        return self


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
    samples: int = Field(default=1, ge=1)
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
        """Manifests of earlier 0.1.0 builds still read: their version field was `schema`, and
        the GitHub run attempt was the shard's `attempt`."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "schema" in data and "schema_version" not in data:
            data["schema_version"] = data.pop("schema")
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


def same_run(a: Manifest, b: Manifest, where_a: object, where_b: object) -> None:
    """The one check that two shards belong to one run: same identity, same plan."""
    for key in sorted(set(a.identity) | set(b.identity)):
        va, vb = a.identity.get(key), b.identity.get(key)
        if va != vb and key == "config_hash":  # name the setting: a hash alone says nothing to act on
            names = sorted(n for n in set(a.config) | set(b.config) if a.config.get(n) != b.config.get(n))
            if names:
                key, va, vb = f"setting {names[0]}", a.config.get(names[0]), b.config.get(names[0])
        if va != vb:
            raise InputError(f"shards are from different runs: {key} is {va!r} in {where_a} but {vb!r} in {where_b}; "
                             "aggregate the shards of one configuration at a time")
    if a.plan != b.plan:
        raise InputError(f"shards {where_a} and {where_b} were planned differently (another --of or instance set)")
    if a.sample != b.sample:  # the design weighs the verdict: no shard may bring its own
        raise InputError(f"shards {where_a} and {where_b} carry different sample designs; "
                         "aggregate the shards of one plan at a time")


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
    sample: int = 0
    attempt: int = 1
    patch: str = ""
    stats: AgentStats = Field(default_factory=AgentStats)
    usage: ModelUsage = Field(default_factory=ModelUsage)
    steps: list[Step] = Field(default_factory=list)
    messages: list[dict[str, str]] = Field(default_factory=list)
    agent_returncode: int | None = None  # an agent command's exit status (the command seam)


class Record(BaseModel):
    """One line of results.jsonl: one finished attempt at one (instance, sample)."""

    instance_id: str
    repo: str
    sample: int = 0
    status: Status
    error: ErrorInfo | None = None
    patch: str = ""
    tests: Tests = Field(default_factory=Tests)
    agent: AgentStats = Field(default_factory=AgentStats)
    timings: Timings = Field(default_factory=Timings)
    attempt: int = 1
    started_at: str
    finished_at: str
    run: str | None = None  # the config hash of the run that wrote it (stamped by the store)
    suspicious: list[str] = Field(default_factory=list)  # "path: why" of a patch that may game the grader

    @property
    def key(self) -> tuple[str, int]:
        return (self.instance_id, self.sample)

    @property
    def is_infra_failure(self) -> bool:
        return self.status in INFRA_FAILURES

    @property
    def model_server_failed(self) -> bool:
        """The model server failed it after the client's retries: it may be down (a request it
        refused is kind `model_refused`, and the server is up)."""
        return self.error is not None and self.error.kind == ErrorKind.MODEL


class InstanceResult(BaseModel):
    repo: str
    status: Status
    samples: int = Field(default=0, ge=0)
    resolved_samples: int = Field(default=0, ge=0)
    time: float = 0.0
    error: ErrorInfo | None = None
    failing_tests: list[UntrustedText] = Field(default_factory=list)
    attempt: int | None = None
    exit_reason: ExitReason | None = None
    steps: int = 0
    tokens: int = 0
    log_tail: UntrustedText = ""
    suspicious: list[UntrustedText] = Field(default_factory=list)  # what its patch touches of test collection

    @model_validator(mode="after")
    def _counts(self) -> InstanceResult:
        # A report is read from an artifact anyone's run may have written: its counts must add up.
        if self.resolved_samples > self.samples:
            raise ValueError(f"{self.resolved_samples} resolved samples of {self.samples}")
        if self.samples == 1 and self.status.verdict is not None and (
                self.resolved_samples == 1) != (self.status == Status.RESOLVED):
            raise ValueError(f"status {self.status} with {self.resolved_samples} of 1 sample resolved")
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


class UnreadableLine(BaseModel):
    """A line of results.jsonl (line 0: the whole file) that could not be read: said, never dropped."""

    file: str
    line: int
    reason: str
    instance_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}" + (f" ({self.instance_id})" if self.instance_id else "")


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
    samples: int = 1
    warnings: list[UntrustedText] = Field(default_factory=list)
    instances: dict[str, InstanceResult]
    pass_at_k: dict[str, float] | None = None
    suspicious: list[str] = Field(default_factory=list)  # instances whose patch may game the grader
    sample: SampleDesign | None = None  # how the run's instances were drawn from the full set
    environment: dict[str, str | None] = Field(default_factory=dict)  # the model server's kind, version, digest
    finished_at: str = ""  # the last record's end: orders a baseline history
    comparison: Comparison | None = None  # against the baseline history, when there was one
    verdict: Verdict | None = None


def read_plan(path: Path) -> Plan:
    return _read(path, Plan, PLAN_VERSION, "a ci-eval plan", "make it with ci-eval plan --output")


def read_manifest(path: Path) -> Manifest:
    return _read(path, Manifest, MANIFEST_VERSION, "a ci-eval manifest", "remove it or fix it")


def read_trajectory(path: Path) -> Trajectory:
    return _read(path, Trajectory, TRAJECTORY_VERSION, "a ci-eval trajectory", "give an agent run's trajectory.json")


def read_report(path: Path) -> Report:
    return _read(path, Report, REPORT_VERSION, "a ci-eval report", "give the report.json of a ci-eval run")


def _read(path: Path, model: type[Contract], version: int, what: str, todo: str) -> Contract:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        parsed = model.model_validate(data)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not {what} ({one_line(exc)}); {todo}") from None
    if getattr(parsed, "schema_version", None) != version:
        found = getattr(parsed, "schema_version", None)
        raise InputError(f"{path} is {what} of schema version {found}; this ci-eval reads {version}")
    return parsed


def schemas() -> dict[str, dict[str, Any]]:
    return {"plan.schema.json": Plan.model_json_schema(), "manifest.schema.json": Manifest.model_json_schema(),
            "results.schema.json": Record.model_json_schema(), "report.schema.json": Report.model_json_schema(),
            "trajectory.schema.json": Trajectory.model_json_schema()}


def write_schemas(folder: Path = SCHEMAS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (folder / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMAS)

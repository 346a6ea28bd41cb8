"""The bash-only agent: the model proposes one command, the sandbox runs it, until it submits."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ci_eval import __version__, progress
from ci_eval.agent_config import AgentConfig
from ci_eval.contracts import AgentStats, ErrorKind, ExitReason, Step, Trajectory
from ci_eval.errors import InfraError
from ci_eval.instances import Instance
from ci_eval.layout import TRAJECTORY
from ci_eval.model import Message, Model, Reply, Usage
from ci_eval.sandbox import Backend, Output, OutputCap, Sandbox
from ci_eval.solver import Job, Solution, Solver

SUBMIT = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
BASH_BLOCK = re.compile(r"```bash[ \t]*\n(.*?)```", re.DOTALL)
ELIDED = "[this output was removed to keep the conversation inside the model's context window]"
_PER_MESSAGE_TOKENS = 8  # what a chat template adds around each message
MAX_FORMAT_ERRORS = 3  # replies in a row without exactly one command end the attempt
# A compaction elides down to this share of the window: low enough that the next one is many
# steps away, high enough to keep the recent exchanges (benchmarks/model_time.py).
LOW_WATER = 0.5
# A patch is read whole or not at all: one cut in the middle would be graded as another patch.
PATCH_CAP = OutputCap(keep=16 * 1024 * 1024, flood=16 * 1024 * 1024)


@dataclass(frozen=True)
class AgentLimits:
    """The agent's limits, named as the settings they come from (the wiring gives them)."""

    step_limit: int
    token_budget: int
    agent_timeout: float
    command_timeout: float
    context_window: int
    max_tokens: int
    observation_chars: int


def solver(limits: AgentLimits, model: Model, *, seed: int, config: AgentConfig, network: bool,
           config_hash: str) -> Solver:
    """The agent in a sandbox of its own per job (grading later starts a fresh one), off the
    network unless `network`; sample k uses seed + k; each trajectory stamped with the run's hash."""

    async def with_agent(job: Job, backend: Backend, logs: Path) -> Solution:
        run = Trajectory(ci_eval_version=__version__, config_hash=config_hash, instance_id=job.instance.instance_id,
                         sample=job.sample, attempt=job.attempt)
        async with backend.create(job.instance, network=network) as sandbox:
            await solve(job.instance, sandbox, model, limits, seed + job.sample, logs / TRAJECTORY, config, run)
        return Solution(run.patch, run.stats)

    return with_agent


class TokenCounter:
    """A hard upper bound on a request's prompt tokens, without the model's tokenizer.

    A message the server has not counted yet costs at most a token per UTF-8 byte of its text
    (no byte-level tokenizer makes more, and digits come close: a fixed bytes-per-token guess let
    40 steps of numeric output pass the window) and _PER_MESSAGE_TOKENS for its chat template.
    A request that extends the last one costs what the server counted for that one, plus its new
    messages; a reply costs at most its own completion tokens. So between compactions the bound
    is the server's count of all but the newest observation. For a compaction each text keeps
    bounds of its own: a reply's usage bounds what its request's new messages cost together (the
    prompt's tokens less what the known messages cost at least, or at most), exact for a message
    that came alone. A prompt reported smaller than the one it extends is not a count
    of the whole prompt (Ollama 0.30 counted only the uncached tokens until ollama/ollama#16428):
    from then on nothing is learned.
    """

    def __init__(self) -> None:
        self.known: dict[str, tuple[int, int]] = {}  # text -> (at least, at most) tokens
        self.trusted = True
        self.last: tuple[list[str], int] = ([], 0)  # the last request's texts and prompt tokens

    def estimate(self, messages: list[Message]) -> int:
        texts = [m["content"] for m in messages]
        before, counted = self.last
        if self.trusted and before and texts[: len(before)] == before:  # appended to: the counted start is exact
            return counted + sum(map(self.cost, texts[len(before):]))
        return sum(map(self.cost, texts))

    def cost(self, text: str) -> int:
        return self.known.get(text, (0, _bound(text)))[1]

    def observe(self, messages: list[Message], prompt_tokens: int, reply: str = "", reply_tokens: int = 0) -> None:
        """Learn from a request's reported prompt tokens, and from the reply's own tokens (it
        joins the next request as a message)."""
        texts = [m["content"] for m in messages]
        before, counted = self.last
        if prompt_tokens < counted and texts[: len(before)] == before:
            self.trusted = False
        if prompt_tokens <= 0 or not self.trusted:
            return
        self.last = (texts, prompt_tokens)
        new = [t for t in texts if t not in self.known]  # each occurrence: a stub can repeat
        most = prompt_tokens - sum(self.known[t][0] for t in texts if t in self.known)
        least = prompt_tokens - sum(self.known[t][1] for t in texts if t in self.known)
        floors, bounds = sum(map(_floor, new)), sum(map(_bound, new))
        for text in set(new):  # the others at their least for its most, at their most for its least
            times = new.count(text)
            high = math.ceil((most - floors + times * _floor(text)) / times)
            low = (least - bounds + times * _bound(text)) // times
            self.known[text] = (max(_floor(text), low), min(_bound(text), max(1, high)))
        if reply and reply_tokens > 0 and reply not in self.known:
            self.known[reply] = (_floor(reply), min(_bound(reply), reply_tokens + _PER_MESSAGE_TOKENS))


def _bound(text: str) -> int:
    """The most tokens a message can cost: its template, and a token per byte of its text."""
    return len(text.encode()) + _PER_MESSAGE_TOKENS


def _floor(text: str) -> int:
    """The fewest tokens a message can cost: a token per 32 bytes of text (no tokenizer averages
    longer tokens over a text), nothing for a template that may add nothing."""
    return len(text.encode()) // 32


class Context:
    """What the model is sent: the conversation, append-only between rare compactions.

    A model server reuses only the exact leading part of the previous request (llama.cpp and
    Ollama; for hybrid Mamba models such as Granite 4.0 H the recurrent state can only continue
    it), so a request that appends to the last costs only its new tokens. When the next request
    would not fit `budget`, one compaction (`compact`) cuts it down to `low_water` of it and
    appending starts again; what it left stays as it is, so even a compaction keeps the system
    prompt, the issue and the exchanges elided before.
    """

    def __init__(self, messages: list[Message], budget: int, counter: TokenCounter,
                 low_water: float = LOW_WATER) -> None:
        self.messages = [dict(m) for m in messages]
        self.budget, self.counter, self.low_water = budget, counter, low_water
        self.compactions = 0
        self.sent: list[Message] = []  # the last request
        self.sent_chars = 0  # over every request
        self.repeated_chars = 0  # … of which the start of the request before had the same

    def append(self, message: Message) -> None:
        self.messages.append(dict(message))

    def request(self) -> list[Message]:
        if self.counter.estimate(self.messages) > self.budget:
            self.messages = compact(self.messages, int(self.budget * self.low_water), self.budget, self.counter)
            self.compactions += 1
        request = [dict(m) for m in self.messages]
        self.sent_chars += _chars(request)
        self.repeated_chars += repeated_prefix(self.sent, request)
        self.sent = request
        return [dict(m) for m in request]


def compact(messages: list[Message], target: int, budget: int, counter: TokenCounter) -> list[Message]:
    """The conversation cut to `target` tokens: the oldest observations are elided first, then
    the oldest replies, then the oldest elided exchanges dropped whole (their stubs still cost
    tokens); the system prompt, the issue and the last exchange stay, cut in the middle only
    when they alone exceed `budget`."""
    out = [dict(m) for m in messages]
    for role in ("user", "assistant"):
        for i in range(2, len(out) - 2):
            if counter.estimate(out) <= target:
                return out
            if out[i]["role"] == role and out[i]["content"] != ELIDED:
                out[i]["content"] = ELIDED
    while counter.estimate(out) > target and len(out) > 4:
        del out[2:4]  # a reply and its observation: the roles still alternate
    while (over := counter.estimate(out) - budget) > 0:
        longest = max(range(len(out)), key=lambda k: len(out[k]["content"]))
        content = out[longest]["content"]
        keep = len(content) - over - 200  # an unknown text costs a token a byte: cut bytes
        if keep < 200:
            raise InfraError(f"--context-window leaves {budget} prompt tokens: too few for the system prompt and "
                             "the issue", kind=ErrorKind.CONTEXT, transient=False)
        out[longest]["content"] = cut_middle(content, keep)
    return out


def repeated_prefix(before: list[Message], after: list[Message]) -> int:
    """How many characters at the start of `after` repeat the start of `before` (roles and
    contents in order): what a server's prompt cache can reuse."""
    same = 0
    for old, new in zip(before, after, strict=False):
        if old["role"] != new["role"]:
            break
        if old["content"] != new["content"]:
            return same + len(old["role"]) + _common_start(old["content"], new["content"])
        same += len(new["role"]) + len(new["content"])
    return same


def _common_start(a: str, b: str) -> int:
    """The length of the longest common prefix, by bisection over slice comparisons (in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _chars(messages: list[Message]) -> int:
    return sum(len(m["role"]) + len(m["content"]) for m in messages)


def cut_middle(text: str, limit: int) -> str:
    """Keep the head and the tail of a long text, saying how much was cut between them."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


async def solve(instance: Instance, sandbox: Sandbox, model: Model, limits: AgentLimits, seed: int,
                path: Path, config: AgentConfig, run: Trajectory | None = None) -> Trajectory:
    """Run the loop to a submission or a limit, into `run` (stamped by the solver); the
    trajectory is written to `path` whatever happens."""
    run = run or Trajectory(instance_id=instance.instance_id)
    messages: list[Message] = [
        {"role": "system", "content": config.render("system")},
        {"role": "user", "content": config.render("instance", problem_statement=instance.problem_statement)},
    ]
    run.messages = list(messages)
    usage = run.usage = Usage()
    counter = TokenCounter()
    context = Context(messages, limits.context_window - limits.max_tokens, counter)
    start = time.monotonic()
    in_a_row = 0
    try:
        while not (reason := _limit_hit(run.stats, usage, limits, time.monotonic() - start)):
            reply = await query(model, context, seed, run.stats, usage)
            say(run, context, {"role": "assistant", "content": reply.content})
            commands = BASH_BLOCK.findall(reply.content)
            if len(commands) != 1:
                run.stats.format_errors += 1
                in_a_row += 1
                if in_a_row >= MAX_FORMAT_ERRORS:
                    reason = ExitReason.FORMAT_ERRORS
                    break
                say(run, context, {"role": "user", "content": config.render("format_error", found=len(commands))})
                continue
            in_a_row = 0
            out = await execute(sandbox, commands[0].strip(), limits, run, reply)
            if submitted(out.output):
                reason = ExitReason.SUBMITTED
                break
            say(run, context, {"role": "user", "content": observation(config, run.steps[-1], limits)})
        run.stats.exit_reason = reason
        if reason == ExitReason.SUBMITTED:
            patch = await diff(sandbox, instance.base_commit)
            if patch is None:
                run.stats.exit_reason = ExitReason.PATCH_TOO_LARGE
            run.patch = patch or ""
    finally:
        run.stats.exit_reason = run.stats.exit_reason or ExitReason.INTERRUPTED
        tally(run.stats, usage, context)
        save(path, run)
    return run


async def query(model: Model, context: Context, seed: int, stats: AgentStats, usage: Usage) -> Reply:
    """One model call, and what it cost."""
    request = context.request()
    reply = await model.complete(request, seed)
    context.counter.observe(request, reply.prompt_tokens, reply.content, reply.completion_tokens)
    usage.add(reply)
    stats.steps += 1
    progress.stepped(stats.steps)
    return reply


async def execute(sandbox: Sandbox, command: str, limits: AgentLimits, run: Trajectory, reply: Reply) -> Output:
    """Run the model's command; the step goes into the trajectory with what the model will see."""
    out = await sandbox.execute(command, limits.command_timeout)
    run.steps.append(Step(step=run.stats.steps, command=command, returncode=out.returncode,
                              timed_out=out.timed_out, seconds=round(out.seconds, 3),
                              model_seconds=round(reply.seconds, 3),
                              output=cut_middle(out.output, limits.observation_chars)))
    return out


def submitted(output: str) -> bool:
    return output.lstrip().startswith(SUBMIT)


def observation(config: AgentConfig, step: Step, limits: AgentLimits) -> str:
    """What the model is told of the command it ran."""
    if step.timed_out:
        return config.render("timeout", seconds=f"{limits.command_timeout:g}", output=step.output)
    return config.render("observation", returncode=step.returncode, output=step.output)


def tally(stats: AgentStats, usage: Usage, context: Context) -> None:
    """The attempt's model costs and prompt reuse, into its stats."""
    stats.prompt_tokens, stats.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    stats.cached_tokens, stats.model_seconds = usage.cached_tokens, round(usage.seconds, 3)
    stats.compactions = context.compactions
    stats.reprocessed_steps = usage.reprocessed()
    stats.sent_chars, stats.repeated_chars = context.sent_chars, context.repeated_chars


def say(run: Trajectory, context: Context, message: Message) -> None:
    """A message joins the conversation: whole in the trajectory, appended to the context."""
    run.messages.append(message)
    context.append(message)


async def diff(sandbox: Sandbox, base_commit: str) -> str | None:
    """Everything the agent changed, new files included, against the base commit; None when
    it is larger than PATCH_CAP."""
    out = await sandbox.execute(f"git add -A && git -c core.fileMode=false diff --cached {base_commit}", 120,
                                PATCH_CAP)
    if out.flooded or out.dropped:
        return None
    return out.output if out.returncode == 0 else ""


def save(path: Path, run: Trajectory) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run.model_dump_json(indent=1), encoding="utf-8")


def _limit_hit(stats: AgentStats, usage: Usage, limits: AgentLimits, elapsed: float) -> ExitReason | None:
    if stats.steps >= limits.step_limit:
        return ExitReason.STEP_LIMIT
    if usage.prompt_tokens + usage.completion_tokens >= limits.token_budget:
        return ExitReason.TOKEN_BUDGET
    if elapsed >= limits.agent_timeout:
        return ExitReason.TIME_LIMIT
    return None

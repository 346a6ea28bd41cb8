"""The Python seam: what an agent gets for one attempt, and what ci-eval keeps of it.

An agent is `async def agent(attempt: Attempt) -> ExitReason`, made by a factory named in the
settings (`agent = "package.module:factory"`, called once per shard with the `Options`). It reads
`attempt.task`, runs commands and reads and writes files in the attempt's sandbox, and asks the
model through `attempt.complete`; it says why it stopped. What counts is kept here, not by the
agent: every model call (tokens, seconds) and every command is a step of the trajectory, a call
past the step limit, the token budget or the time limit is refused (`LimitReached`), and the
patch is what the sandbox's repository holds against the base commit when the agent says
`submitted`, never what the agent claims. ci-eval's own loop (`agent.py`) and the command seam
(`command.py`) are two such agents.
"""

from __future__ import annotations

import importlib
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ci_eval import __version__, progress
from ci_eval.agent_config import AgentConfig
from ci_eval.contracts.shard import Step, Trajectory
from ci_eval.contracts.status import ExitReason
from ci_eval.errors import InputError
from ci_eval.model import Message, Model, Reply, Usage
from ci_eval.sandbox import WORKDIR, Backend, Output, OutputCap, Sandbox
from ci_eval.shard_folder import TRAJECTORY
from ci_eval.solver import Job, Solution, Solver

# A patch or a file is read whole or not at all: one cut in the middle would be another patch.
WHOLE = OutputCap(keep=16 * 1024 * 1024, flood=16 * 1024 * 1024)


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


@dataclass(frozen=True)
class Options:
    """What a factory gets, once per shard: the limits and the prompts of `--agent-config`, the
    model's name on the server, and the shell command of `--agent-command` (for the command seam)."""

    limits: AgentLimits
    agent_config: AgentConfig
    model: str = ""
    command: str | None = None


@dataclass(frozen=True)
class Task:
    """The instance as an agent sees it."""

    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    workdir: str  # the repository's root inside the sandbox, where commands start
    seed: int  # the model's seed for this attempt (the run's seed + the epoch)


class LimitReached(Exception):
    """A model call past one of the attempt's limits, refused; `reason` ends the attempt."""

    def __init__(self, reason: ExitReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


Agent = Callable[["Attempt"], Awaitable[ExitReason]]
Factory = Callable[[Options], Agent]


class Attempt:
    """One attempt at one instance: its sandbox, its model calls and its trajectory."""

    def __init__(self, task: Task, sandbox: Sandbox, model: Model, limits: AgentLimits, trajectory: Trajectory,
                 logs: Path) -> None:
        self.task, self.sandbox, self.model, self.limits = task, sandbox, model, limits
        self.trajectory, self.logs = trajectory, logs  # logs: the attempt's folder, for what the agent keeps
        self.usage = trajectory.usage = Usage()
        self.started = time.monotonic()
        self.deadline = time.time() + limits.agent_timeout  # epoch seconds, for agents in other processes
        self.ended: ExitReason | None = None  # a limit that refused a call
        self._model_seconds = 0.0  # of the last call, for the step it proposed

    def limit_hit(self) -> ExitReason | None:
        """The limit the attempt has reached, if any: the next model call would be refused."""
        if self.ended is not None:
            return self.ended
        if self.trajectory.stats.steps >= self.limits.step_limit:
            return ExitReason.STEP_LIMIT
        if self.usage.prompt_tokens + self.usage.completion_tokens >= self.limits.token_budget:
            return ExitReason.TOKEN_BUDGET
        if time.monotonic() - self.started >= self.limits.agent_timeout:
            return ExitReason.TIME_LIMIT
        return None

    async def complete(self, messages: list[Message]) -> Reply:
        """One model call at the attempt's seed, counted; refused past a limit."""
        reason = self.limit_hit()
        if reason is not None:
            self.ended = reason
            raise LimitReached(reason, refusal(reason, self.limits))
        reply = await self.model.complete(messages, self.task.seed)
        self.usage.add(reply)
        self.trajectory.stats.steps += 1
        self._model_seconds = reply.seconds
        progress.stepped(self.trajectory.stats.steps)
        return reply

    async def execute(self, command: str) -> tuple[Output, Step]:
        """Run a command at the repository's root with the agent's time-out and output bound; it
        is a step of the trajectory, with what the agent is shown of its output."""
        out = await self.sandbox.execute(command, self.limits.command_timeout)
        step = Step(step=self.trajectory.stats.steps, command=command, returncode=out.returncode,
                    timed_out=out.timed_out, seconds=round(out.seconds, 3), model_seconds=round(self._model_seconds, 3),
                    output=cut_middle(out.output, self.limits.observation_chars))
        self.trajectory.steps.append(step)
        return out, step

    async def read_file(self, path: str) -> str:
        """A file of the sandbox, whole (up to 16 MiB), relative to the repository's root."""
        out = await self.sandbox.execute(f"cat -- {shlex.quote(path)}", self.limits.command_timeout, WHOLE)
        if out.returncode != 0:
            raise FileNotFoundError(f"{path}: {out.output.strip()[:200]}")
        if out.flooded or out.dropped:
            raise ValueError(f"{path} is larger than 16 MiB: read it in parts with execute()")
        return out.output

    async def write_file(self, path: str, content: str) -> None:
        """A file of the sandbox, relative to the repository's root."""
        await self.sandbox.write_file(path if path.startswith("/") else f"{self.task.workdir}/{path}", content)

    def say(self, message: Message) -> None:
        """A message of the conversation, kept whole in the trajectory."""
        self.trajectory.messages.append(dict(message))

    async def play(self, agent: Agent) -> Trajectory:
        """Run the agent to its end; the patch when it submitted; the trajectory written into the
        attempt's logs whatever happens."""
        trajectory = self.trajectory
        try:
            try:
                reason = await agent(self)
            except LimitReached as stop:
                reason = stop.reason
            trajectory.stats.exit_reason = self.ended or reason
            if trajectory.stats.exit_reason == ExitReason.SUBMITTED:
                patch = await diff(self.sandbox, self.task.base_commit)
                if patch is None:
                    trajectory.stats.exit_reason = ExitReason.PATCH_TOO_LARGE
                trajectory.patch = patch or ""
        finally:
            trajectory.stats.exit_reason = trajectory.stats.exit_reason or ExitReason.INTERRUPTED
            tally(trajectory, self.usage)
            save(self.logs / TRAJECTORY, trajectory)
        return trajectory


def refusal(reason: ExitReason, limits: AgentLimits) -> str:
    """What an agent is told of a call past a limit."""
    said = {ExitReason.STEP_LIMIT: f"the step limit ({limits.step_limit} model calls)",
            ExitReason.TOKEN_BUDGET: f"the token budget ({limits.token_budget} tokens)",
            ExitReason.TIME_LIMIT: f"the time limit ({limits.agent_timeout:g} s)"}
    return f"ci-eval: {said.get(reason, reason.value)} of this attempt is spent; the attempt ends ({reason.value})"


def task_of(job: Job, seed: int) -> Task:
    inst = job.instance
    return Task(instance_id=inst.instance_id, repo=inst.repo, base_commit=inst.base_commit,
                problem_statement=inst.problem_statement, workdir=WORKDIR, seed=seed + job.epoch)


def solver(agent: Agent, limits: AgentLimits, model: Model, *, seed: int, network: bool, config_hash: str) -> Solver:
    """The agent in a sandbox of its own per job (grading later starts a fresh one), off the
    network unless `network`; epoch k uses seed + k; each trajectory stamped with the run's hash."""

    async def with_agent(job: Job, backend: Backend, logs: Path) -> Solution:
        trajectory = Trajectory(ci_eval_version=__version__, config_hash=config_hash,
                                instance_id=job.instance.instance_id, epoch=job.epoch, attempt=job.attempt)
        async with backend.create(job.instance, network=network) as sandbox:
            await Attempt(task_of(job, seed), sandbox, model, limits, trajectory, logs).play(agent)
        return Solution(trajectory.patch, trajectory.stats)

    return with_agent


def load_factory(name: str) -> Factory:
    """`package.module:factory`, imported; a one-line error when it is not there."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise InputError(f"agent {name!r} is not package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import the agent's module {module_name!r} ({exc}); install it or fix `agent`") \
            from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"{module_name} has no callable {attr!r}: `agent` names package.module:factory")
    return factory  # type: ignore[no-any-return]


async def diff(sandbox: Sandbox, base_commit: str) -> str | None:
    """Everything the agent changed, new files included, against the base commit; None when
    it is larger than WHOLE allows."""
    out = await sandbox.execute(f"git add -A && git -c core.fileMode=false diff --cached {base_commit}", 120,
                                WHOLE)
    if out.flooded or out.dropped:
        return None
    return out.output if out.returncode == 0 else ""


def tally(trajectory: Trajectory, usage: Usage) -> None:
    """The attempt's model costs, into its stats."""
    stats = trajectory.stats
    stats.prompt_tokens, stats.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    stats.cached_tokens, stats.model_seconds = usage.cached_tokens, round(usage.seconds, 3)
    stats.reprocessed_steps = usage.reprocessed()


def save(path: Path, trajectory: Trajectory) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(trajectory.model_dump_json(indent=1), encoding="utf-8")


def cut_middle(text: str, limit: int) -> str:
    """Keep the head and the tail of a long text, saying how much was cut between them."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"

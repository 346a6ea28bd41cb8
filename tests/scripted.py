"""An in-process model for the agent's own logic: scripted replies, no HTTP server, no grading.
The HTTP fake (openai_server.py) stays for what only a wire shows: the client, its retries, the
cache reports."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_eval.agent import bash_agent
from ci_eval.agent_config import PACKAGED, AgentConfig
from ci_eval.attempt import AgentLimits, Attempt, Options, Task
from ci_eval.config import load_settings
from ci_eval.contracts.shard import Trajectory
from ci_eval.dataset import load_instances
from ci_eval.errors import InfraError
from ci_eval.instances import Instance, select
from ci_eval.model import Message, Reply
from ci_eval.sandbox.local import LocalBackend
from ci_eval.shard import agent_limits
from tests.conftest import FIXTURES, INSTANCES
from tests.openai_server import Script, tokens


@dataclass
class ScriptedModel:
    """Plays a script; refuses, as llama.cpp does, a request whose prompt plus max_tokens
    exceeds the window (kept in `violations`), counting tokens by the HTTP fake's own rule."""

    script: Script
    context_window: int = 8192
    max_tokens: int = 1024
    tokenize: Callable[[list[Message]], int] = tokens
    reports_usage: bool = True  # False: usage of zeros, as some servers answer
    # The seconds a reply takes, from the request and the one before (None: a millisecond).
    timing: Callable[[list[Message], list[Message]], float] | None = None
    requests: list[list[Message]] = field(default_factory=list)
    violations: list[int] = field(default_factory=list)

    async def complete(self, messages: list[Message], seed: int) -> Reply:
        self.requests.append([dict(m) for m in messages])
        used = self.tokenize(messages)
        if used + self.max_tokens > self.context_window:
            self.violations.append(used)
            raise InfraError(f"context length {self.context_window} exceeded: {used}", kind="model_refused")
        step = self.script(messages)
        if isinstance(step, int):
            raise InfraError(f"scripted {step}", kind="model")
        if not self.reports_usage:
            return Reply(step, 0, 0, 0.001)
        before = self.requests[-2] if len(self.requests) > 1 else []
        seconds = self.timing(before, messages) if self.timing else 0.001
        return Reply(step, used, math.ceil(len(step) / 3), seconds)


def dense(messages: list[Message]) -> int:
    """A tokenizer for number-heavy text: a token per digit, as tokenizers that split numbers
    into digits make (a third of a token a byte for the rest, 8 a message)."""
    return sum(sum(c.isdigit() for c in m["content"])
               + math.ceil(sum(not c.isdigit() for c in m["content"].encode("utf-8").decode()) / 3) + 8
               for m in messages)


def limits(**overrides: Any) -> AgentLimits:
    """The agent's limits as the wiring makes them from the default settings, but for `overrides`."""
    return dataclasses.replace(agent_limits(load_settings({}).with_derived_limits()), **overrides)


def fixture(instance_id: str) -> Instance:
    return select(load_instances(str(INSTANCES)), [instance_id])[0]


def attempt(instance_id: str, model: ScriptedModel, logs: Path, given: AgentLimits | None = None,
            config: AgentConfig = PACKAGED) -> Trajectory:
    """One agent attempt on a fixture in a local sandbox, the model in this process."""
    instance = fixture(instance_id)
    given = given or limits()
    model.max_tokens = given.max_tokens  # what the client would ask the server for

    async def run() -> Trajectory:
        backend = LocalBackend(FIXTURES / "repos")
        try:
            async with backend.create(instance, network=False) as sandbox:
                task = Task(instance.instance_id, instance.repo, instance.base_commit, instance.problem_statement,
                            "/testbed", 0)
                made = Trajectory(instance_id=instance.instance_id)
                return await Attempt(task, sandbox, model, given, made, logs).play(bash_agent(Options(given, config)))
        finally:
            await backend.close()

    return asyncio.run(run())

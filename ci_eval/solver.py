"""The seam between the pool and what makes a patch: a Solver gets a job and a backend (to create
a sandbox of its own, if it needs one) and returns a Solution. Two exist: predictions
(`predictions.solver`) and an agent (`attempt.solver`, for any agent of the seams); the wiring
(`shard.py`) picks one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ci_eval.contracts.shard import AgentStats
from ci_eval.instances import Instance
from ci_eval.sandbox import Backend


@dataclass(frozen=True)
class Job:
    instance: Instance
    epoch: int = 0  # which repeat of the instance (--epochs)
    attempt: int = 1


@dataclass
class Solution:
    patch: str
    agent: AgentStats = field(default_factory=AgentStats)


Solver = Callable[[Job, Backend, Path], Awaitable[Solution]]


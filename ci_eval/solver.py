"""The seam between the pool and what makes a patch: a Solver gets a job and a backend (to open
a sandbox of its own, if it needs one) and returns a Solution. Two exist: predictions
(`predictions.solver`) and the agent (`agent.solver`); `for_settings` picks one by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ci_eval.instances import Instance
from ci_eval.results import AgentStats
from ci_eval.sandbox import Backend

if TYPE_CHECKING:
    from ci_eval.config import Settings
    from ci_eval.model import OpenAIModel


@dataclass(frozen=True)
class Job:
    instance: Instance
    sample: int = 0
    attempt: int = 1


@dataclass
class Solution:
    patch: str
    agent: AgentStats = field(default_factory=AgentStats)


Solver = Callable[[Job, Backend, Path], Awaitable[Solution]]


def for_settings(settings: Settings, planned: Sequence[Instance], model: OpenAIModel | None) -> Solver:
    """`predictions` when --predictions is given, else `agent` (which needs the model)."""
    if settings.predictions is not None:
        from ci_eval import predictions

        return predictions.solver(predictions.load_predictions(settings.predictions, planned))
    from ci_eval import agent, agent_config

    assert model is not None, "the agent needs a model"
    config = agent_config.load(settings.agent_config) if settings.agent_config else agent.PACKAGED
    return agent.solver(agent.limits_from(settings, config), model, settings.seed, config,
                        network=settings.agent_network == "bridge")

"""The agent's prompts and limits as data: the packaged ones, overridden by `--agent-config FILE`
(TOML or YAML), so that a pull request can change a prompt and see what it does."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ci_eval.errors import InputError, one_line

# Each prompt and the placeholders it may use; the starred ones it must use.
PLACEHOLDERS: dict[str, dict[str, bool]] = {
    "system": {},
    "instance": {"problem_statement": True},
    "observation": {"returncode": False, "output": True},
    "format_error": {"found": False},
    "timeout": {"seconds": False, "output": True},
}


class LimitOverrides(BaseModel):
    """The `[limits]` an agent config may set: the agent's own settings, by their names (the
    model's stay with the run); the wiring puts them under the flags and variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_limit: int | None = Field(default=None, gt=0)
    token_budget: int | None = Field(default=None, gt=0)
    agent_timeout: float | None = Field(default=None, gt=0)
    command_timeout: float | None = Field(default=None, gt=0)
    observation_chars: int | None = Field(default=None, ge=200)  # as the setting: fewer shows nothing useful


@dataclass(frozen=True)
class AgentConfig:
    prompts: dict[str, str] = field(default_factory=dict)
    limits: LimitOverrides = field(default_factory=LimitOverrides)

    def render(self, name: str, **values: object) -> str:
        text = self.prompts.get(name) or packaged(name)
        return Template(text).substitute({k: str(v) for k, v in values.items()})


@functools.cache  # read once per process, not at every step of every attempt
def packaged(name: str) -> str:
    return resources.files("ci_eval.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")


def read_agent_config(path: Path) -> AgentConfig:
    """`[prompts]` name = template and `[limits]` name = number; anything else is a one-line error."""
    data = _read(path)
    unknown = sorted(set(data) - {"prompts", "limits"})
    if unknown:
        raise InputError(f"{path}: unknown section {unknown[0]!r} (an agent config has prompts and limits)")
    prompts, limits = data.get("prompts", {}), data.get("limits", {})
    if not isinstance(prompts, dict) or not isinstance(limits, dict):
        raise InputError(f"{path}: prompts and limits must be tables of name = value")
    for name, text in prompts.items():
        _check_template(path, name, text)
    for name, value in limits.items():
        if name not in LimitOverrides.model_fields:
            raise InputError(f"{path}: unknown limit {name!r} (one of {', '.join(LimitOverrides.model_fields)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise InputError(f"{path}: limit {name} must be a positive number, not {value!r}")
    try:
        return AgentConfig(dict(prompts), LimitOverrides.model_validate(limits))
    except ValidationError as exc:  # a fraction where a count goes, or under a setting's floor
        raise InputError(f"{path}: limit {one_line(exc)}") from None


PACKAGED = AgentConfig()  # the prompts under ci_eval/prompts/, no limits of its own


def _check_template(path: Path, name: str, text: Any) -> None:
    if name not in PLACEHOLDERS:
        raise InputError(f"{path}: unknown prompt {name!r} (one of {', '.join(PLACEHOLDERS)})")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{path}: prompt {name} must be a non-empty text")
    template = Template(text)
    if not template.is_valid():
        raise InputError(f"{path}: prompt {name} has a lone '$' (write $$ for a dollar sign)")
    used, allowed = set(template.get_identifiers()), PLACEHOLDERS[name]
    if used - set(allowed):
        raise InputError(f"{path}: prompt {name} uses ${sorted(used - set(allowed))[0]}, which it is never given "
                         f"(it has: {', '.join('$' + p for p in allowed) or 'none'})")
    missing = [p for p, required in allowed.items() if required and p not in used]
    if missing:
        raise InputError(f"{path}: prompt {name} must contain ${missing[0]}")


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read agent config {path} ({exc})") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # tomllib and yaml each have their own error types
        kind = "YAML" if path.suffix in (".yaml", ".yml") else "TOML"
        raise InputError(f"{path}: not valid {kind} ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a table of prompts and limits")
    return data

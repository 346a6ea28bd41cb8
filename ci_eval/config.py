"""Settings: flags > env `CI_EVAL_*` > a TOML file > defaults, validated once."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ci_eval.errors import InputError, first_error
from ci_eval.machine import MODEL_GB, MOST_WORKERS, gigabytes, model_here, named, workers_for
from ci_eval.redact import redact_url

DEFAULT_DATASET = "SWE-bench/SWE-bench_Verified"
DEFAULT_AGENT = "ci_eval.agent:bash_agent"

# What the time limits allow per agent step when they are not set: a safety net, about three
# times the step granite4:tiny-h is expected to take on an ubuntu-latest runner (partition's
# STEP_SECONDS), so that the step limit, not the runner's speed, ends an attempt.
STEP_ALLOWANCE = 180.0
# What an instance needs besides its agent and its tests: the image pull, two containers.
SETUP_SECONDS = 900.0


def role(section: str = "run", hashed: bool = True) -> dict[str, Any]:
    """A field's role: the commands whose flag it is (select, pace: plan and shard; run: shard;
    none: no flag), and whether it is part of the run's identity, hashed into config_hash. Those
    that only change how fast or where a run goes are not, so shards run with different worker
    counts still merge; nor are the time limits: an attempt they cut gets no verdict (too_slow,
    error), so they decide whether a run says something, never what it says."""
    return {"section": section, "hashed": hashed}


UNHASHED = role(hashed=False)


# Settings renamed, today's name by its former one: read under either (flag, key, variable).
FORMERLY = {"samples": "epochs"}


class Settings(BaseSettings):
    # Empty variables count as unset: the GitHub Action maps every input, given or not, to one.
    model_config = SettingsConfigDict(env_prefix="CI_EVAL_", extra="forbid", env_ignore_empty=True)

    # What to evaluate. Each field's description is its --flag's help (cli.py builds the flags
    # from these fields); the section says which commands take it.
    dataset: str = Field(DEFAULT_DATASET, description="Hub dataset name or a .json/.jsonl/.parquet file.",
                         json_schema_extra=role("select"))
    split: str = Field("test", description="Dataset split (Hub datasets).", json_schema_extra=role("select"))
    revision: str | None = Field(None, description="Hub dataset revision (commit, tag or branch) to pin.",
                                 json_schema_extra=role("select"))
    instance_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Only these instances (repeatable).",
        json_schema_extra=role("select", hashed=False))
    filter: str | None = Field(None, description="Only instances whose id matches this regular expression.",
                               json_schema_extra=role("select"))
    sample_size: int | None = Field(None, ge=1, description="A random subset of this many instances.",
                                    json_schema_extra=role("select"))
    sample_seed: int = Field(0, description="The seed that draws --sample-size.",
                             json_schema_extra=role("select"))
    # which datasets may run, not what a run measures
    image_pattern: str | None = Field(None, description="A regular expression every instance's image must match "
                                      "[the official swebench/ namespace and the bundled demo's].",
                                      json_schema_extra=role("select", hashed=False))
    # where the images come from: another build of the environments is another run
    image_template: str | None = Field(
        None, description="Each instance's image from another registry: a reference with {instance_id} "
        "(e.g. ghcr.io/epoch-research/swe-bench.eval.x86_64.{instance_id}:latest); only its images may run.",
        json_schema_extra=role("select"))
    # where the history lay: what it chose is in the plan
    sample_from: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Baseline reports (files or folders, repeatable): draw --sample-size "
        "where their outcomes vary, stratified, instead of at random.", json_schema_extra=role("select", hashed=False))
    predictions: str | None = Field(None, description="'gold' or an official predictions .json/.jsonl file.")
    epochs: int = Field(1, ge=1, description="Independent attempts per instance, each at its own seed.")

    # where and how
    output: Path | None = Field(None, description="The shard's folder [ci-eval-results/shard-I].",
                                json_schema_extra=UNHASHED)
    # "pace": the shard's and the plan's (--budget-minutes prices a shard by them).
    workers: int = Field(MOST_WORKERS, ge=1, le=64, description="Concurrent instances [from the machine: "
                         "2 where its memory and cores hold them, else 1].",
                         json_schema_extra=role("pace", hashed=False))
    machine: str | None = Field(None, description="Size the workers and price the steps for this machine "
                                "instead of the one ci-eval runs on: CORESxGB, e.g. 2x7 for a private repository's "
                                "runner [this machine].", json_schema_extra=role("pace", hashed=False))
    # Unset: one slot per worker. On 2 cores two llama.cpp slots ended the same requests
    # 1.45x sooner than one slot on both (benchmarks/model_slots.py).
    model_slots: int | None = Field(None, ge=1, le=64, description="Concurrent model requests [the workers].",
                                    json_schema_extra=role("pace", hashed=False))
    deadline_minutes: float | None = Field(
        None, gt=0, description="Past this many minutes from the start, no instance starts and running ones stop "
        "(not attempted, resumable).", json_schema_extra=UNHASHED)
    sandbox: Literal["auto", "docker", "local"] = Field("auto", description="Where commands run.")
    repos_dir: Path | None = Field(None, description="Source trees for the local sandbox.", json_schema_extra=UNHASHED)
    max_attempts: int = Field(3, ge=1, description="Tries per instance for infrastructure failures.",
                              json_schema_extra=UNHASHED)
    prune_images: bool = Field(False, description="Remove each instance image after its last use in the shard.",
                               json_schema_extra=UNHASHED)

    # limits
    instance_timeout: float | None = Field(
        None, gt=0, description="Wall-clock seconds per instance [the agent's limit + eval timeout + 900].",
        json_schema_extra=UNHASHED)
    eval_timeout: float = Field(1800, gt=0, description="Seconds for the tests.")
    command_timeout: float = Field(120, gt=0, description="Seconds per agent command.")
    memory_limit: str = Field("4g", description="Container memory limit.")
    agent_network: Literal["none", "bridge"] = Field(
        "none", description="The agent's container network: none (no route out, no neighbours) or Docker's bridge "
        "(it could fetch the upstream fix). The model is reached by ci-eval, never from the container.")
    pids_limit: int = Field(1024, ge=16, description="Container process limit.")

    # the model (any OpenAI-compatible server)
    model: str = Field("granite4:tiny-h", description="Model name on the server.")
    base_url: str = Field("http://localhost:11434/v1", description="OpenAI-compatible server.")
    api_key: SecretStr = Field(SecretStr(""), description="From CI_EVAL_API_KEY only: never a flag, never written.",
                               json_schema_extra=role("none", hashed=False))
    temperature: float = Field(0.0, description="Sampling temperature.")
    max_tokens: int = Field(1024, description="Tokens per model reply.")
    seed: int = Field(0, description="Model seed; epoch k uses seed + k.")
    request_timeout: float = Field(300, description="Seconds per model request.", json_schema_extra=UNHASHED)
    model_down_minutes: float = Field(
        10, gt=0, description="When the model server goes down, no instance starts while it is probed this long; "
        "then the shard ends, the rest resumable.", json_schema_extra=UNHASHED)
    fold_system_prompt: bool = Field(
        False, description="Send the system prompt at the start of the first user message, for chat templates "
        "without a system role (Gemma's drops it; --local-model sets this).")
    # 32768 and 3000: of the windows and cuts measured (benchmarks/model_time.py), the pair that
    # processes the fewest prompt tokens per step (~1k) with >90% of each request a cached prefix;
    # granite4:tiny-h has a 128k context and few attention layers, so the longer prompt costs little.
    context_window: int = Field(32768, ge=1024, description="Tokens the whole request must fit in.")
    step_limit: int = Field(40, ge=1, description="Model calls per attempt.")
    token_budget: int | None = Field(
        None, ge=1, description="Tokens per attempt, cached ones included [step limit x context window: never "
        "before the step limit].")
    agent_timeout: float | None = Field(
        None, gt=0, description=f"Wall-clock seconds for the agent per attempt [step limit x {STEP_ALLOWANCE:g}].",
        json_schema_extra=UNHASHED)
    observation_chars: int = Field(3000, ge=200, description="Command output shown to the model, head+tail.")
    agent_config: Path | None = Field(None, description="TOML or YAML of prompts and limits over the packaged ones.")
    # the agent is a setting, not a code path: ci-eval's own is one user of the seams (docs/usage.md)
    agent: str = Field(DEFAULT_AGENT, description="The agent, as package.module:factory (the Python seam).")
    agent_command: str | None = Field(
        None, description="A shell command run as the agent once per attempt, instead of --agent (the command "
        "seam: CI_EVAL_TASK, CI_EVAL_EXEC and a counted OPENAI_BASE_URL in its environment).")
    local_model: bool = Field(False, description="Start llama.cpp with Gemma 3 270M (extra: local-model) and use it.")

    @field_validator("filter", "image_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression ({exc})") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _former_names(cls, data: Any) -> Any:
        """A setting under its former name (a TOML key, an argument, a CI_EVAL_ variable) is read
        under today's, which wins when both are given."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in FORMERLY.items():
            value = data.pop(old, None)
            if value is None:
                value = os.environ.get(f"CI_EVAL_{old.upper()}") or None
            if value is not None and data.get(new) is None:
                data[new] = value
        return data

    @model_validator(mode="before")
    @classmethod
    def _workers_from_the_machine(cls, data: Any) -> Any:
        """Unset workers follow the machine read now (a plan's, a shard's): a container's memory
        limit each beside the model when it is served here, two cores each (machine.workers_for)."""
        if not isinstance(data, dict) or data.get("workers") not in (None, ""):
            return data

        def given(name: str) -> Any:
            value = data.get(name)
            return cls.model_fields[name].default if value in (None, "") else value

        try:  # read as the fields will read them; a bad value is its own one-line error after this
            limit = gigabytes(str(given("memory_limit")))
            local = TypeAdapter(bool).validate_python(given("local_model"))
            where = named(data.get("machine"))
        except (AttributeError, ValueError):
            return data
        model_gb = MODEL_GB if model_here(str(given("base_url")), given("predictions"), local) else 0.0
        return {**data, "workers": workers_for(where, limit, model_gb)}

    @field_validator("machine")
    @classmethod
    def _cores_x_gigabytes(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[1-9][0-9]*x[0-9]+(\.[0-9]+)?", value.strip().lower()):
            raise ValueError(f"{value!r} is not CORESxGB, like 2x7 or 4x16")
        return value.strip().lower() if value is not None else None

    @field_validator("memory_limit")
    @classmethod
    def _bytes(cls, value: str) -> str:
        # Docker's own units; checked here so that a typo is one line, not an error per instance.
        if not re.fullmatch(r"[1-9][0-9]*[bkmg]?", value.strip().lower()):
            raise ValueError(f"{value!r} is not a size like 512m or 4g")
        return value.strip().lower()

    @field_validator("instance_ids", "sample_from", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        # "a b,c" from an environment variable or an Action input; a list from flags or a file
        return re.split(r"[\s,]+", value.strip()) if isinstance(value, str) and value.strip() else value or []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def with_derived_limits(self) -> Settings:
        """A copy with the limits left unset sized from the step limit: a token budget never spent
        before the step limit, and the agent's wall clock as a safety net. resolve() calls it, after
        the agent config's limits, so that every part reads one value."""
        return self.model_copy(update={"token_budget": self.token_budget or self.step_limit * self.context_window,
                                       "agent_timeout": self.agent_timeout or self.step_limit * STEP_ALLOWANCE})

    def slots(self) -> int:
        """Model requests in flight at most: the slots, but never more than the workers that make them."""
        return min(self.model_slots or self.workers, self.workers)

    def instance_time_limit(self) -> float:
        solving = self.with_derived_limits().agent_timeout or 0.0 if self.predictions is None else 0.0
        return self.instance_timeout or solving + self.eval_timeout + SETUP_SECONDS

    def hashed(self) -> dict[str, Any]:
        """What a result depends on (the fields placed hashed), secrets removed: the manifest's
        config, and what config_hash hashes."""
        data = self.model_dump(mode="json", include=HASHED)
        # The local model listens on a new port each run; the port is not part of what it is.
        data["base_url"] = "local" if self.local_model else redact_url(self.base_url)
        # settings at their default that came later are left out: earlier runs keep their hash
        for name, default in (("agent", DEFAULT_AGENT), ("agent_command", None), ("image_template", None)):
            if data[name] == default:
                del data[name]
        if data["token_budget"] == self.step_limit * self.context_window:  # derived: hashed as unset, as before
            data["token_budget"] = None
        for old, new in FORMERLY.items():  # hashed under the former name: a run keeps its config hash
            data[old] = data.pop(new)
        dataset = Path(self.dataset)
        if dataset.is_file():  # what the file holds, however it was named (relative, absolute, elsewhere)
            data["dataset"] = "file:" + hashlib.sha256(dataset.read_bytes()).hexdigest()[:16]
        if self.agent_config is not None:  # what the prompts say, not where the file lay
            content = self.agent_config.read_bytes() if self.agent_config.is_file() else b""
            data["agent_config"] = hashlib.sha256(content).hexdigest()[:16]
        return data

    def config_hash(self) -> str:
        return digest(self.hashed())


def digest(hashed: dict[str, Any]) -> str:
    """The config hash of what `Settings.hashed` returned: for a caller that has it already."""
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]


HASHED = {name for name, f in Settings.model_fields.items()
          if not isinstance(f.json_schema_extra, dict) or f.json_schema_extra.get("hashed", True)}


def load_settings(flags: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Build settings from CLI flags (None means "not given") over env, file and defaults."""
    given = {k: v for k, v in flags.items() if v is not None and v != ()}

    class FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    if config_file is not None and not config_file.is_file():
        raise InputError(f"config file {config_file} does not exist")
    try:
        return FromFile(**given)
    except ValidationError as exc:
        unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden" and e["loc"]]
        if unknown:  # a typo: name the file and the setting it resembles
            like = difflib.get_close_matches(unknown[0], list(Settings.model_fields), n=1)
            raise InputError(f"{config_file or 'settings'}: unknown setting {unknown[0]!r}"
                             + (f" (did you mean {like[0]!r}?)" if like else "")
                             + "; ci-eval shard --help lists them") from None
        where, what = first_error(exc)
        raise InputError(f"bad setting {where!r}: {what}") from None


"""Settings: flags > env `CI_EVAL_*` > a TOML file > defaults, validated once."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ci_eval.errors import InputError

DEFAULT_DATASET = "SWE-bench/SWE-bench_Verified"

# Settings that only change how fast or where a run goes, not what it measures: they stay out
# of the config hash, so shards run with different worker counts still merge.
_NOT_IDENTITY = {"workers", "output", "repos_dir", "max_attempts", "api_key", "instance_ids", "prune_images"}


class Settings(BaseSettings):
    # Empty variables count as unset: the GitHub Action maps every input, given or not, to one.
    model_config = SettingsConfigDict(env_prefix="CI_EVAL_", extra="forbid", env_ignore_empty=True)

    # what to evaluate
    dataset: str = DEFAULT_DATASET
    split: str = "test"
    revision: str | None = None  # a Hub dataset's commit, tag or branch: pin it so every run grades the same rows
    instance_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    filter: str | None = None  # a regular expression: only instance ids it matches (re.search)
    sample_size: int | None = Field(default=None, ge=1)  # a random subset of this many instances…
    sample_seed: int = 0  # … drawn with this seed: the same subset on every machine
    predictions: str | None = None  # "gold", a predictions file, or None to run the agent
    samples: int = Field(default=1, ge=1)

    # where and how
    output: Path | None = None  # the shard's folder; None means ci-eval-results/shard-<index>
    workers: int = Field(default=4, ge=1, le=64)
    sandbox: Literal["auto", "docker", "local"] = "auto"
    repos_dir: Path | None = None
    max_attempts: int = Field(default=3, ge=1)
    prune_images: bool = False  # remove an instance image once no job of the shard needs it

    # limits
    instance_timeout: float = Field(default=3600, gt=0)
    eval_timeout: float = Field(default=1800, gt=0)
    command_timeout: float = Field(default=120, gt=0)
    memory_limit: str = "4g"
    pids_limit: int = Field(default=1024, ge=16)

    # the model (any OpenAI-compatible server)
    model: str = "granite4:tiny-h"
    base_url: str = "http://localhost:11434/v1"
    api_key: SecretStr = SecretStr("")
    temperature: float = 0.0
    max_tokens: int = 1024
    seed: int = 0
    request_timeout: float = 300
    context_window: int = 8192
    step_limit: int = Field(default=40, ge=1)
    token_budget: int = Field(default=400_000, ge=1)
    agent_timeout: float = Field(default=1800, gt=0)
    observation_chars: int = Field(default=6000, ge=200)
    agent_config: Path | None = None  # TOML or YAML: prompts and limits over the packaged ones
    local_model: bool = False  # start the bundled llama.cpp server with a small model and use it

    @field_validator("filter")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression ({exc})") from None
        return value

    @field_validator("memory_limit")
    @classmethod
    def _bytes(cls, value: str) -> str:
        # Docker's own units; checked here so that a typo is one line, not an error per instance.
        if not re.fullmatch(r"[1-9][0-9]*[bkmg]?", value.strip().lower()):
            raise ValueError(f"{value!r} is not a size like 512m or 4g")
        return value.strip().lower()

    @field_validator("instance_ids", mode="before")
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

    def identity(self) -> dict[str, Any]:
        """What a result depends on, secrets removed: recorded in every manifest."""
        data = self.model_dump(mode="json", exclude=_NOT_IDENTITY)
        # The local model listens on a new port each run; the port is not part of what it is.
        data["base_url"] = "local" if self.local_model else redact_url(self.base_url)
        if self.agent_config is not None:  # what the prompts say, not where the file lay
            content = self.agent_config.read_bytes() if self.agent_config.is_file() else b""
            data["agent_config"] = hashlib.sha256(content).hexdigest()[:16]
        return data

    def config_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


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
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(f"bad setting {where!r}: {err['msg'].removeprefix('Value error, ')}") from None


def redact_url(url: str) -> str:
    """Drop credentials and query string from a URL before it is written anywhere."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))

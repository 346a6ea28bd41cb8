"""Shared fixtures. Tests that need the Docker engine skip without one, and fail instead
when CI_EVAL_REQUIRE_DOCKER=1 (as .ci/run sets it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_eval.config import Settings, load_settings

# The tests size workers and price steps for GitHub's runner of a public repository, whatever
# machine runs them (subprocesses inherit it); the tests of other machines name theirs.
os.environ["CI_EVAL_MACHINE"] = "4x16"
# No test reaches the Hugging Face Hub (this machine cannot, and a test that tried would wait out
# the libraries' retries); set before any of them is imported, since they read it once.
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

FIXTURES = Path(__file__).parent / "fixtures"
INSTANCES = FIXTURES / "instances.jsonl"


def need(what: str, env: str, why: str) -> None:
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required here ({env}=1) but {why}")
    pytest.skip(f"{what} not available: {why}")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker
    import docker.errors

    from tests.fixtures import images

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        need("a Docker engine", "CI_EVAL_REQUIRE_DOCKER", str(exc).splitlines()[0])
    try:
        images.build(client)
    except docker.errors.DockerException as exc:
        need("the fixture images", "CI_EVAL_REQUIRE_DOCKER", f"they could not be built: {exc}")
    yield client
    client.close()


def ours(client: Any, made_by: Path | str) -> list[Any]:
    """The containers that a shard folder (or a backend's owner name) made and that still exist:
    this test's own, whatever other ci-eval runs share the engine."""
    from ci_eval.sandbox.docker import OWNER_LABEL
    from ci_eval.shard import owner_of

    owner = made_by if isinstance(made_by, str) else owner_of(made_by)
    return list(client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"}))


def rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in INSTANCES.read_text().splitlines() if line]


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    flags: dict[str, Any] = {"dataset": str(INSTANCES), "output": tmp_path / "out", "workers": 3}
    flags.update(overrides)
    return load_settings(flags)


def write_predictions(path: Path, patches: dict[str, str]) -> Path:
    path.write_text("".join(
        json.dumps({"instance_id": iid, "model_name_or_path": "test", "model_patch": patch}) + "\n"
        for iid, patch in patches.items()
    ))
    return path


def resolved(given: Settings, backend: Any = None, agent_config: Any = None, url: str | None = None) -> Settings:
    """The Settings a shard of `given` would run with (shard.resolve), on the fixtures: planned
    as one shard, in an isolating local sandbox unless `backend` says otherwise."""
    from ci_eval.agent_config import PACKAGED
    from ci_eval.planfile import make_plan
    from ci_eval.sandbox.local import LocalBackend
    from ci_eval.shard import resolve

    backend = backend or LocalBackend(FIXTURES / "repos", isolated=True)
    return resolve(given, make_plan(given, 1), agent_config or PACKAGED, url, backend)

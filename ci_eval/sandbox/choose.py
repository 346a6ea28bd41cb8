"""Which sandbox runs a shard: `docker` and `local` are what they say; `auto` takes Docker when
an engine answers and the shard's images are there (or no local sources exist), else local."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ci_eval.errors import InputError
from ci_eval.instances import Instance
from ci_eval.sandbox import Backend
from ci_eval.sandbox.local import LocalBackend, repo_dir

log = logging.getLogger(__name__)


def choose_backend(sandbox: str, planned: Sequence[Instance], owner: str, *, repos_dir: Path | None,
                   dataset: str, memory_limit: str, pids_limit: int) -> Backend:
    from ci_eval.sandbox.docker import DockerBackend, connect

    repos = repos_dir or _repos_beside(dataset)
    if sandbox == "local":
        if repos is None:
            raise InputError("--sandbox local needs --repos-dir (a folder of owner__name source trees)")
        return LocalBackend(repos)
    try:
        client = connect()
    except InputError as exc:
        if sandbox == "docker" or repos is None:
            raise
        log.info(f"no Docker engine ({exc}); using the local sandbox with {repos}")
        return LocalBackend(repos)
    if sandbox == "auto" and repos is not None:
        missing = sorted({i.image for i in planned} - _local_images(client))
        if missing and all(repo_dir(repos, i.repo).is_dir() for i in planned):
            log.info(f"{len(missing)} image(s) not built here ({missing[0]}, …); using the local sandbox with {repos}")
            client.close()
            return LocalBackend(repos)
    backend = DockerBackend(client, owner, memory_limit, pids_limit)
    swept = backend.sweep()
    if swept:
        log.info(f"removed {swept} container(s) left by an interrupted run")
    return backend


def _local_images(client: Any) -> set[str]:
    return {tag for image in client.images.list() for tag in image.tags}


def _repos_beside(dataset: str) -> Path | None:
    candidate = Path(dataset).parent / "repos"
    return candidate if Path(dataset).is_file() and candidate.is_dir() else None


"""Where commands run: a container per instance (`docker.py`) or a temp dir (`local.py`)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from ci_eval.instances import Instance

WORKDIR = "/testbed"  # where SWE-bench images keep the repository
SCRATCH = "/tmp/ci-eval"  # where ci-eval puts its own files (patch, eval script)


@dataclass(frozen=True)
class Output:
    returncode: int
    output: str  # stdout and stderr interleaved, decoded with replacement of bad bytes
    timed_out: bool
    seconds: float


class Sandbox(Protocol):
    async def execute(self, command: str, timeout: float) -> Output: ...

    async def write_file(self, path: str, content: str) -> None: ...


class Backend(Protocol):
    """Opens one fresh sandbox per use; the sandbox is gone when the context ends."""

    name: str

    def prefetch(self, instances: Iterable[Instance]) -> None:
        """Start making these instances' environments ready in the background."""

    async def ensure_image(self, instance: Instance) -> None: ...

    def remove_image(self, instance: Instance) -> None:
        """Free what the instance's environment takes; nothing of the shard needs it any more."""

    def open(self, instance: Instance, *, network: bool) -> AbstractAsyncContextManager[Sandbox]: ...

    async def close(self) -> None: ...

"""Where commands run: a container per instance (`docker.py`) or a temp dir (`local.py`)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ci_eval.instances import Instance
from ci_eval.sandbox.output import AGENT, Output, OutputCap

__all__ = ["SCRATCH", "WORKDIR", "Backend", "Output", "OutputCap", "Sandbox"]

WORKDIR = "/testbed"  # where SWE-bench images keep the repository
SCRATCH = "/tmp/ci-eval"  # where ci-eval puts its own files (patch, eval script)


class Sandbox(Protocol):
    async def execute(self, command: str, timeout: float, cap: OutputCap = AGENT) -> Output:
        """Run a bash command; its output bounded by `cap`, the command stopped when it floods."""

    async def write_file(self, path: str, content: str) -> None: ...

    async def memory_killed(self) -> bool:
        """Whether the sandbox's memory limit has killed a process in it."""


class Backend(Protocol):
    """Opens one fresh sandbox per use; the sandbox is gone when the context ends."""

    name: str
    # whether a sandbox keeps its commands from ci-eval's process, its secrets and its neighbours
    isolated: bool

    def prefetch(self, instances: Iterable[Instance]) -> None:
        """Start making these instances' environments ready in the background."""

    async def ensure_image(self, instance: Instance) -> None: ...

    def remove_image(self, instance: Instance) -> None:
        """Free what the instance's environment takes; nothing of the shard needs it any more."""

    def create(self, instance: Instance, *, network: bool) -> AbstractAsyncContextManager[Sandbox]: ...

    async def close(self) -> None: ...

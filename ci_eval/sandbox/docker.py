"""The real sandbox: one labelled, limited container per use, removed on every path."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.utils import parse_repository_tag
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ci_eval.errors import InfraError, InputError, one_line
from ci_eval.instances import Instance
from ci_eval.sandbox import WORKDIR, Limit, Output
from ci_eval.sandbox.output import AGENT, Capture

LABEL = "ci-eval"  # every container ci-eval makes carries it
OWNER_LABEL = "ci-eval.owner"  # which shard folder made it: a rerun sweeps only its own
KILL_GRACE = 5  # seconds between TERM and KILL when a command runs out of time
# The kernel's count of processes the memory limit killed: cgroup v2, then v1.
OOM_KILLS = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null"


def _transient(exc: BaseException) -> bool:
    """What a busy or restarting daemon throws; a missing image or a bad request is final."""
    if isinstance(exc, docker.errors.APIError):
        return bool(exc.is_server_error())
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


_retry = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.5, max=8),
    reraise=True,
)


def connect(timeout: int = 600) -> docker.DockerClient:
    """A client for a daemon that answers, or a one-line error saying what to do."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise InputError(
            f"cannot reach the Docker engine ({one_line(exc)}); start it (dockerd) "
            "or run without Docker: --sandbox local"
        ) from None


class DockerBackend:
    name = "docker"
    isolated = True  # a container: its own users, processes, /tmp and network

    def __init__(self, client: docker.DockerClient, owner: str, memory_limit: str, pids_limit: int) -> None:
        self.client = client
        self.owner = owner
        self.memory_limit = memory_limit
        self.pids_limit = pids_limit
        self._images: dict[str, asyncio.Task[None]] = {}
        self._pull_slot = asyncio.Semaphore(1)  # one pull at a time keeps the disk and link sane

    def sweep(self) -> int:
        """Remove containers a killed run of this same shard left behind."""
        left = self.client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={self.owner}"})
        for container in left:
            _remove(container)
        return len(left)

    def prefetch(self, instances: Iterable[Instance]) -> None:
        """Start making these instances' images present, in the background, in order."""
        for inst in instances:
            self._image_task(inst.image)

    async def ensure_image(self, instance: Instance) -> None:
        await asyncio.shield(self._image_task(instance.image))

    def remove_image(self, instance: Instance) -> None:
        """Free the disk an instance image takes, once nothing planned needs it any more."""
        self._images.pop(instance.image, None)
        with suppress(docker.errors.DockerException):  # in use or gone: freeing disk is best effort
            self.client.images.remove(instance.image, force=True)

    @asynccontextmanager
    async def open(self, instance: Instance, *, network: bool) -> AsyncIterator[DockerSandbox]:
        creating = asyncio.ensure_future(asyncio.to_thread(self._create, instance, network))
        try:
            container = await asyncio.shield(creating)
        except _FAILURES as exc:
            raise _infra(f"could not start a container for {instance.instance_id}", exc) from None
        except asyncio.CancelledError:
            # The thread goes on and makes the container anyway: take it down before leaving.
            with suppress(*_FAILURES):
                await asyncio.to_thread(_remove, await creating)
            raise
        try:
            yield DockerSandbox(self.client, container)
        finally:
            # Shielded: a cancelled run (Ctrl-C) must still take its containers down.
            await asyncio.shield(asyncio.to_thread(_remove, container))

    async def close(self) -> None:
        await asyncio.to_thread(self.sweep)  # a backstop: nothing of this shard outlives it
        for task in self._images.values():
            task.cancel()
        await asyncio.gather(*self._images.values(), return_exceptions=True)
        self.client.close()

    def _image_task(self, image: str) -> asyncio.Task[None]:
        if image not in self._images:
            self._images[image] = asyncio.create_task(self._make_present(image))
        return self._images[image]

    async def _make_present(self, image: str) -> None:
        if await asyncio.to_thread(self._has_image, image):
            return  # never pull what is there
        async with self._pull_slot:
            try:
                await asyncio.to_thread(self._pull, image)
            except docker.errors.DockerException as exc:
                raise InfraError(f"image {image} is not present and the pull failed: {one_line(exc, 300)}",
                                 kind="image") from None

    def _has_image(self, image: str) -> bool:
        try:
            self.client.images.get(image)
            return True
        except docker.errors.ImageNotFound:
            return False

    @_retry
    def _pull(self, image: str) -> None:
        repository, tag = parse_repository_tag(image)
        self.client.images.pull(repository, tag=tag or "latest")

    @_retry
    def _create(self, instance: Instance, network: bool) -> Container:
        name = f"ci-eval-{instance.instance_id.lower()[:60]}-{uuid.uuid4().hex[:8]}"
        container = self.client.containers.create(
            instance.image,
            command=["tail", "-f", "/dev/null"],
            name=name,
            labels={LABEL: "1", OWNER_LABEL: self.owner, "ci-eval.instance": instance.instance_id},
            mem_limit=self.memory_limit,
            memswap_limit=self.memory_limit,  # no swap on top: the limit is what the tests get
            pids_limit=self.pids_limit,
            network_mode=None if network else "none",
            working_dir=WORKDIR,
            user="root",
        )
        try:
            container.start()
        except BaseException:
            _remove(container)
            raise
        return container


class DockerSandbox:
    def __init__(self, client: docker.DockerClient, container: Container) -> None:
        self.api = client.api
        self.container = container

    async def execute(self, command: str, timeout: float, limit: Limit = AGENT) -> Output:
        # `timeout` in the container ends the command; the daemon-side wait is a backstop.
        argv = wrap(command, timeout, limit.flood)
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._run, argv, timeout, limit), timeout + 60)
        except TimeoutError:
            raise InfraError(f"container {self.container.name} stopped answering", kind="docker") from None
        except _FAILURES as exc:
            raise _infra(f"command failed in {self.container.name}", exc) from None

    async def write_file(self, path: str, content: str) -> None:
        data = content.encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        try:
            await asyncio.to_thread(self.container.put_archive, "/", buf.getvalue())
        except _FAILURES as exc:
            raise _infra(f"could not write {path} in {self.container.name}", exc) from None

    async def memory_killed(self) -> bool:
        out = await self.execute(OOM_KILLS, 30)
        return any(line.split()[:1] == ["oom_kill"] and line.split()[1:2] != ["0"]
                   for line in out.output.splitlines())

    def _run(self, argv: list[str], timeout: float, limit: Limit) -> Output:
        start = time.monotonic()
        exec_id = self.api.exec_create(self.container.id, argv, workdir=WORKDIR)["Id"]
        capture = Capture(limit)
        for chunk in self.api.exec_start(exec_id, stream=True):
            capture.feed(chunk)
        returncode: Any = self.api.exec_inspect(exec_id)["ExitCode"]
        seconds = time.monotonic() - start
        return capture.result(int(returncode or 0), timed_out(int(returncode or 0), seconds, timeout), seconds)


def wrap(command: str, timeout: float, flood: int) -> list[str]:
    """argv that runs `command` under `timeout`, stderr on stdout, stopped after `flood` bytes.

    `timeout` signals the command's whole process group (the test runner's children too) and
    leaves `head` outside it, so `head` still writes out what it holds when the command dies.
    `head` ends a flood at the source with SIGPIPE, so a flood costs neither this process's
    memory nor a socket's worth of copying; pipefail keeps the command's own exit status (141
    when stopped, 124 when timed out). The command travels as an argument, never spliced in.
    """
    script = 'set -o pipefail; timeout -k "$3" "$2" bash -c "$1" 2>&1 | head -c "$4"'
    return ["bash", "-c", script, "ci-eval", command, f"{timeout:g}", str(KILL_GRACE), str(flood)]


def timed_out(returncode: int, seconds: float, timeout: float) -> bool:
    """What `timeout` reports: 124 after TERM, 137 when KILL had to follow."""
    return returncode == 124 or (returncode == 137 and seconds >= timeout)


_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException)


def _infra(what: str, exc: BaseException) -> InfraError:
    return InfraError(f"{what}: {one_line(exc, 300)}", kind="docker", transient=_transient(exc))


def _remove(container: Container) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc.explanation or ""):
            raise  # 409 "removal already in progress": someone else is removing it, which is what we want

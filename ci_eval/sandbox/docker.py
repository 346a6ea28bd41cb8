"""The real sandbox: one labelled, limited container per use, removed on every path."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.utils import parse_repository_tag
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ci_eval.contracts.status import ErrorKind
from ci_eval.errors import InfraError, InputError, one_line
from ci_eval.instances import Instance
from ci_eval.sandbox import WORKDIR, Output, OutputCap
from ci_eval.sandbox.output import AGENT, Capture

LABEL = "ci-eval"  # every container ci-eval makes carries it
OWNER_LABEL = "ci-eval.owner"  # which shard folder made it: a rerun sweeps only its own
KILL_GRACE = 5  # seconds between TERM and KILL when a command runs out of time
OUTSIDE_GRACE = 10  # seconds past both before the command is ended from outside the container
RUNNING = -1  # the exit code of a command still running when its output was cut
INIT_PROCESSES = 2  # the engine's init and the `tail` it runs


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
    async def create(self, instance: Instance, *, network: bool) -> AsyncIterator[DockerSandbox]:
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
                                 kind=ErrorKind.IMAGE) from None

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
            init=True,  # the engine's own init as PID 1 reaps what commands leave behind
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
    """Commands in one container. Its `timeout` and `head` end a command fast, but they are the
    container's own files, which the agent (root in there) can replace: the bounds hold from
    outside too. Past its time and grace, or past its byte limit, a command is ended by
    restarting the container (the writable layer stays, every process goes), and before each
    command whatever an earlier one left running (a fork bomb, a daemon) goes the same way.
    A container that refuses to run a command while the engine answers is the agent's doing."""

    def __init__(self, client: docker.DockerClient, container: Container) -> None:
        self.client = client
        self.api = client.api
        self.container = container
        self.baseline: int | None = None  # its processes before the first command: the init and its child

    async def execute(self, command: str, timeout: float, cap: OutputCap = AGENT) -> Output:
        try:
            await asyncio.to_thread(self._leave_nothing_running)
        except _FAILURES as exc:
            raise _infra(f"could not clear {self.container.name}", exc) from None
        return await self._execute(wrap(command, timeout, cap.flood), timeout, cap)

    async def _execute(self, argv: list[str], timeout: float, cap: OutputCap) -> Output:
        run = asyncio.ensure_future(asyncio.to_thread(self._run, argv, timeout, cap))
        try:
            out = await asyncio.wait_for(asyncio.shield(run), timeout + KILL_GRACE + OUTSIDE_GRACE)
        except TimeoutError:
            # It outlived the container's own `timeout`: ended from outside, still the command's time.
            await asyncio.to_thread(self._restart)
            try:
                out = await asyncio.wait_for(run, OUTSIDE_GRACE)
            except TimeoutError:
                raise InfraError(f"container {self.container.name} stopped answering", kind=ErrorKind.DOCKER) from None
            return replace(out, returncode=124, timed_out=True)
        except _FAILURES as exc:
            return await self._refused(exc)
        if out.flooded and out.returncode == RUNNING:
            await asyncio.to_thread(self._restart)  # its `head` did not stop it: the restart does
        return out

    async def _refused(self, exc: BaseException) -> Output:
        """An exec the engine could not run: the engine's failure if it is down or the container
        gone, else the container's state (a full PID table, a deleted shell), the agent's doing."""
        try:
            await asyncio.to_thread(self.client.ping)
            await asyncio.to_thread(self.container.reload)
        except _FAILURES:
            raise _infra(f"command failed in {self.container.name}", exc) from None
        if self.container.status != "running":
            raise _infra(f"command failed in {self.container.name}", exc) from None
        return Output(126, f"ci-eval: the container could not run the command: {one_line(exc, 300)}\n", False, 0.0)

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
        """Whether the memory limit killed a process here, read from outside the container: the
        host's cgroup files for it (v1 memory.oom_control, v2 memory.events), or where the engine
        runs on another host, its own state. Never through the container's own tools, which a
        patch's code, root in there, can replace."""
        try:
            return await asyncio.to_thread(self._oom_kills_outside)
        except _FAILURES as exc:
            raise _infra(f"could not read the memory state of {self.container.name}", exc) from None

    def _oom_kills_outside(self) -> bool:
        self.container.reload()
        state = self.container.attrs.get("State") or {}
        for path in cgroup_files(int(state.get("Pid") or 0)):
            with suppress(OSError):
                return oom_kills(path.read_text()) > 0
        return bool(state.get("OOMKilled"))

    def _run(self, argv: list[str], timeout: float, cap: OutputCap) -> Output:
        start = time.monotonic()
        exec_id = self.api.exec_create(self.container.id, argv, workdir=WORKDIR)["Id"]
        capture = Capture(cap)
        stream = self.api.exec_start(exec_id, stream=True)
        for chunk in stream:
            capture.feed(chunk)
            if capture.flooded:  # the byte limit, held here whatever the container's `head` does
                stream.close()
                break
        state = self.api.exec_inspect(exec_id)
        for _ in range(10):  # cut at the limit: the container's own `head` may be ending it just now
            if not state.get("Running"):
                break
            time.sleep(0.1)
            state = self.api.exec_inspect(exec_id)
        returncode = RUNNING if state.get("Running") else int(state.get("ExitCode") or 0)
        seconds = time.monotonic() - start
        return capture.result(returncode, timed_out(returncode, seconds, timeout), seconds)

    def _leave_nothing_running(self) -> None:
        """Nothing but the container's own first processes between two commands, as its cgroup
        counts them (the engine's `top` leaves out what a fork bomb leaves dying)."""
        self.container.reload()
        if self.baseline is None:
            self.baseline = max(self._pids(), INIT_PROCESSES)
        elif self.container.status != "running" or self._pids() > self.baseline:
            self._restart()

    def _pids(self) -> int:
        # A busy engine can answer a container's stats with an empty body (seen under load, just
        # after a restart): asked again, it counts.
        for wait in (0.2, 0.5, 1.0):
            with suppress(requests.exceptions.JSONDecodeError):
                return self._counted()
            time.sleep(wait)
        return self._counted()

    def _counted(self) -> int:
        stats: dict[str, Any] = self.container.stats(stream=False, one_shot=True)  # type: ignore[assignment]
        return int((stats.get("pids_stats") or {}).get("current") or 0)

    def _restart(self) -> None:
        """Every process in the container ended, from outside; its files stay as they are."""
        self.container.reload()
        if self.container.status == "running":
            self.container.kill()
            self.container.wait(timeout=30)
        self.container.start()
        for _ in range(50):  # until what the kill left dying is gone (its PIDs still count)
            if self._pids() <= (self.baseline or INIT_PROCESSES):
                return
            time.sleep(0.1)


def cgroup_files(pid: int) -> list[Path]:
    """The host's files that count a container's OOM kills, found from its first process's cgroup
    (none when that process is not visible here: the engine on another host, or stopped)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines() if pid > 0 else []
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # cgroup v1
            found.append(Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.oom_control")
        elif controllers == "":  # cgroup v2's unified hierarchy
            found.append(Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events")
    return [f for f in found if f.exists()]


def oom_kills(text: str) -> int:
    """The `oom_kill N` count of a memory.events or memory.oom_control file."""
    return sum(int(line.split()[1]) for line in text.splitlines() if line.split()[:1] == ["oom_kill"])


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
    return InfraError(f"{what}: {one_line(exc, 300)}", kind=ErrorKind.DOCKER, transient=_transient(exc))


def _remove(container: Container) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "already in progress" not in str(exc.explanation or ""):
            raise  # 409 "removal already in progress": someone else is removing it, which is what we want

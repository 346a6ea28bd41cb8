"""A sandbox without Docker: a process in a temp dir holding a snapshot of the repository.

Commands run with the current Python first on PATH and a minimal environment (no variable of
ci-eval's own, so no API key, reaches them). Where the machine allows it (Linux, as root), each
sandbox is also isolated (`isolation.py`: a uid, a /tmp and a network of its own, the Python
read-only); elsewhere they run as the current user and nothing else isolates them.
SWE-bench's eval scripts name the container paths /testbed and /tmp/ci-eval; this sandbox
rewrites those to its own dirs in every command and file path.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from ci_eval.contracts.status import ErrorKind
from ci_eval.errors import InfraError, InputError
from ci_eval.instances import Instance
from ci_eval.sandbox import SCRATCH, WORKDIR, Output, OutputCap, isolation
from ci_eval.sandbox.output import AGENT, Capture

# A fixed author and date make the snapshot's commit id depend on the files alone, so the
# same tree gives the same base_commit here, in a fixture image and on any machine.
SNAPSHOT_ENV = {
    "GIT_AUTHOR_NAME": "ci-eval",
    "GIT_AUTHOR_EMAIL": "fixtures@ci-eval.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "ci-eval",
    "GIT_COMMITTER_EMAIL": "fixtures@ci-eval.invalid",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
}
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".git")
# All a command gets of ci-eval's environment; anything else (API keys, CI tokens) stays out of
# the agent's commands, and so out of trajectories and prompts.
_PASSED_ON = ("PATH", "LANG", "LC_ALL", "TZ")


def repo_dir(repos_dir: Path, repo: str) -> Path:
    """Where the local sandbox finds a repository: `owner__name`, as in SWE-bench ids."""
    return repos_dir / repo.replace("/", "__")


def snapshot(src: Path, dst: Path) -> str:
    """Copy a source tree to dst, commit it deterministically, return the commit id."""
    shutil.copytree(src, dst, ignore=_IGNORED)
    env = {**os.environ, **SNAPSHOT_ENV}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "commit.gpgsign=false", *args],
            cwd=dst, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "base")
    return git("rev-parse", "HEAD")


class LocalBackend:
    name = "local"

    def __init__(self, repos_dir: Path, isolated: bool | None = None) -> None:
        if not repos_dir.is_dir():
            raise InputError(f"--repos-dir {repos_dir} is not a directory (the local sandbox needs the repositories)")
        self.repos_dir = repos_dir
        self.isolated = isolation.available() if isolated is None else isolated

    def prefetch(self, instances: Iterable[Instance]) -> None:
        return None  # a snapshot is made when a sandbox opens: nothing to fetch ahead

    def remove_image(self, instance: Instance) -> None:
        return None  # the snapshot goes with its sandbox

    async def ensure_image(self, instance: Instance) -> None:
        if not repo_dir(self.repos_dir, instance.repo).is_dir():
            raise InfraError(
                f"no source for {instance.repo} at {repo_dir(self.repos_dir, instance.repo)}",
                kind=ErrorKind.IMAGE, transient=False,
            )

    @asynccontextmanager
    async def create(self, instance: Instance, *, network: bool) -> AsyncIterator[LocalSandbox]:
        if not self.isolated:  # `network` cannot be enforced: nothing is
            async with self._snapshot(instance, None) as root:
                yield LocalSandbox(root)
            return
        with isolation.claim_uid() as uid:
            async with self._snapshot(instance, uid) as root:
                yield LocalSandbox(root, uid, network)

    @asynccontextmanager
    async def _snapshot(self, instance: Instance, uid: int | None) -> AsyncIterator[Path]:
        root = Path(tempfile.mkdtemp(prefix="ci-eval-", dir=isolation.base() if uid is not None else None))
        try:
            commit = await asyncio.to_thread(snapshot, repo_dir(self.repos_dir, instance.repo), root / "testbed")
            if commit != instance.base_commit:
                raise InfraError(
                    f"{repo_dir(self.repos_dir, instance.repo)} snapshots to {commit[:12]}, "
                    f"but {instance.instance_id} needs base_commit {instance.base_commit[:12]}",
                    kind=ErrorKind.IMAGE, transient=False,
                )
            if uid is not None:
                (root / "scratch").mkdir()
                for own, _ in isolation.private_copies(root):
                    own.mkdir(parents=True)
                await asyncio.to_thread(isolation.give, root, uid)
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)

    async def close(self) -> None:
        return None


_DRAIN_SECONDS = 10.0  # for the pipe to close after the command's group is killed


class LocalSandbox:
    def __init__(self, root: Path, uid: int | None = None, network: bool = True) -> None:
        self.root, self.uid, self.network = root, uid, network
        self.commands = 0  # commands that ran here: after one, a set-up failure may be its doing
        self.testbed = root / "testbed"
        self.scratch = root / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)

    def localize(self, text: str) -> str:
        return text.replace(SCRATCH, str(self.scratch)).replace(WORKDIR, str(self.testbed))

    async def write_file(self, path: str, content: str) -> None:
        target = Path(self.localize(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.localize(content), encoding="utf-8")
        if self.uid is not None:
            os.chown(target, self.uid, self.uid)

    def env(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in _PASSED_ON if name in os.environ}
        return {
            "LANG": "C.UTF-8",
            **env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "HOME": str(self.scratch),
            # eval scripts run `git config --global`: keep that out of the user's ~/.gitconfig
            "GIT_CONFIG_GLOBAL": str(self.scratch / "gitconfig"),
        }

    async def memory_killed(self) -> bool:
        return False  # no memory limit here: nothing but the machine itself can run out

    async def execute(self, command: str, timeout: float, cap: OutputCap = AGENT) -> Output:
        """The limits are enforced from here, with nothing but Python (macOS has no GNU timeout):
        a deadline, and a byte count; either kills the command's whole process group."""
        start = time.monotonic()
        shell = self.localize(command)
        status_r = status_w = -1
        if self.uid is None:
            argv = ["bash", "-c", shell]
        else:
            status_r, status_w = os.pipe()
            argv = isolation.argv(shell, self.root, self.uid, self.network, status_w)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.testbed, env=self.env(), start_new_session=True, pass_fds=() if status_w < 0 else (status_w,),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
        except BaseException:
            if status_r >= 0:
                os.close(status_r)
            raise
        finally:
            if status_w >= 0:
                os.close(status_w)  # the child holds it: the pipe ends when the set-up closes it
        assert proc.stdout is not None
        capture = Capture(cap)

        async def drain() -> None:
            # To EOF, whatever happens: asyncio's wait() also waits for the pipe to close, and a
            # pipe left unread after a kill (its transport paused, full) never does.
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                if capture.flooded:
                    continue  # the group is killed: what is still in the pipe is discarded
                capture.feed(chunk)
                if capture.flooded:
                    _kill_group(proc.pid)

        reader = asyncio.create_task(drain())
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(reader), timeout)
        except TimeoutError:
            timed_out = True
            _kill_group(proc.pid)
        except BaseException:
            _kill_group(proc.pid)  # cancelled: leave no process behind
            raise
        finally:
            returncode = await _ended(proc, reader)
            set_up = status_r < 0 or _said_ready(status_r)  # read, and closed, on every way out
        output = capture.result(returncode, timed_out, time.monotonic() - start)
        if not set_up and not timed_out and not capture.flooded:
            return self._not_set_up(output)
        self.commands += 1
        return output

    def _not_set_up(self, output: Output) -> Output:
        """The command never ran. Before anything ran here, that is the machine's failure; after
        commands of the sandbox's own, it may be their doing, so it is theirs to see (and the
        attempt's to be charged with), never a no-verdict."""
        said = output.output.strip()[-300:]
        if not self.commands:
            raise InfraError(f"the local sandbox could not be set up: {said}", kind=ErrorKind.SANDBOX,
                             transient=False)
        return Output(125, f"ci-eval: the sandbox could not be set up after the earlier commands: {said}\n",
                      False, output.seconds)


async def _ended(proc: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> int:
    """The return code once the pipe is drained; bounded, since a process that left the killed
    group (setsid) can hold the pipe open for ever: then stop reading and take the code as is."""
    with suppress(TimeoutError):
        await asyncio.wait_for(reader, _DRAIN_SECONDS)
    try:
        return await asyncio.wait_for(proc.wait(), _DRAIN_SECONDS)
    except TimeoutError:
        return proc.returncode if proc.returncode is not None else -signal.SIGKILL


def _said_ready(fd: int) -> bool:
    """Whether the set-up wrote READY on its status pipe (closed by now: the command has ended)."""
    os.set_blocking(fd, False)  # a writer left open somewhere must not hold ci-eval here
    try:
        with os.fdopen(fd, "rb") as pipe:
            return pipe.read(len(isolation.READY)) == isolation.READY.encode()
    except (OSError, TypeError):  # nothing written yet: a non-blocking read gives None
        return False


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)

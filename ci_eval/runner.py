"""The async pool: schedule, time out, checkpoint, resume, shut down cleanly."""

from __future__ import annotations

import asyncio
import errno
import signal
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from ci_eval.contracts import AgentStats, ErrorInfo, Record, Status, Timings
from ci_eval.errors import InfraError
from ci_eval.gaming import suspicious
from ci_eval.grading import grade
from ci_eval.instances import Instance
from ci_eval.layout import log_dir
from ci_eval.progress import CURRENT, Display, Running, phase
from ci_eval.results import ResultStore, now
from ci_eval.sandbox import Backend
from ci_eval.solver import Job, Solver

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Limits:
    instance_timeout: float
    eval_timeout: float
    deadline: float | None  # time.monotonic() past which no job starts and running ones stop
    max_attempts: int  # an attempt lost to a model server that came back is retried at once up to this


class ModelGate:
    """While the model server is down no instance starts: the worker whose attempt found it down
    probes it (`probe`: with backoff, for a bounded time) and the others wait; if it does not come
    back the shard ends, what is left resumable, instead of failing every instance in seconds."""

    def __init__(self, probe: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.probe = probe
        self.lock = asyncio.Lock()
        self.gone = False

    async def open(self) -> bool:
        async with self.lock:  # waits while a probe runs
            return not self.gone

    async def after(self, record: Record) -> bool:
        """Whether to go on: probes when this record says the model server failed."""
        if self.probe is not None and record.model_server_failed:
            async with self.lock:
                if not self.gone:
                    self.gone = not await self.probe()
        return not self.gone


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: running jobs were cancelled and their sandboxes removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def pending_jobs(
    instances: Sequence[Instance], samples: int, done: Mapping[tuple[str, int], Record], max_attempts: int
) -> list[Job]:
    """What is left: never run, or ended by an infrastructure failure with attempts to spare."""
    jobs = []
    for inst in instances:
        for sample in range(samples):
            last = done.get((inst.instance_id, sample))
            if last is None:
                jobs.append(Job(inst, sample))
            elif last.status == Status.NOT_ATTEMPTED:  # stopped by a deadline: its attempt did not count
                jobs.append(Job(inst, sample, last.attempt))
            elif last.is_infra_failure and last.attempt < max_attempts:
                jobs.append(Job(inst, sample, last.attempt + 1))
    return jobs


async def until_signal(work: Awaitable[T]) -> T:
    """Await `work`; SIGINT or SIGTERM cancels it (its sandboxes are removed on the way out)
    and raises Interrupted, from the first moment of a shard (the model check too) to its end."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)


async def run_jobs(
    jobs: Sequence[Job],
    *,
    backend: Backend,
    solve: Solver,
    store: ResultStore,
    root: Path,
    limits: Limits,
    workers: int,
    show: Display,
    prune: bool,
    gate: ModelGate,
) -> None:
    """Run jobs on `workers` concurrent tasks; each result is stored the moment it ends.

    Images are fetched a wave ahead; with `prune`, each is removed after its last job.
    Cancelled (by `until_signal`), no new job starts and the running ones are cancelled, their
    sandboxes removed on the way out; the store already holds every finished job, so running
    again resumes.
    """
    queue = deque(jobs)
    uses = Counter(j.instance.image for j in jobs)  # jobs still to finish, per image
    upcoming = [j.instance for j in jobs]
    backend.prefetch(upcoming[: 2 * workers])

    async def worker() -> None:
        while queue and not past(limits.deadline) and await gate.open():
            job = queue.popleft()
            ahead = len(jobs) - len(queue) + workers  # keep the image of the job after this wave coming
            backend.prefetch(upcoming[ahead : ahead + 1])
            run = Running(job.instance.instance_id + (f"#{job.sample}" if job.sample else ""))
            show.running.append(run)
            token = CURRENT.set(run)
            try:
                record = await until_deadline(job, run_one(job, backend, solve, log_dir(
                    root, job.instance.instance_id, job.sample), limits), limits)
            finally:
                CURRENT.reset(token)
                show.running.remove(run)
            store.append(record)
            show.update(record)
            if not await gate.after(record):
                return  # the model server stayed down: what is left waits for the next run
            if record.model_server_failed and job.attempt < limits.max_attempts:
                queue.appendleft(Job(job.instance, job.sample, job.attempt + 1))  # it is back: try again now
                uses[job.instance.image] += 1
            uses[job.instance.image] -= 1
            if prune and uses[job.instance.image] == 0:  # its last job is done: free the disk
                await asyncio.to_thread(backend.remove_image, job.instance)

    tasks = [asyncio.create_task(worker()) for _ in range(min(workers, len(jobs)))]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        queue.clear()  # no new job starts; the running ones wind down and remove their sandboxes
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for outcome in results:
        if isinstance(outcome, BaseException):
            raise outcome


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


async def until_deadline(job: Job, attempt: Awaitable[Record], limits: Limits) -> Record:
    """The attempt's record, or past the shard's deadline a `not_attempted` one: the attempt is
    cancelled (its sandboxes removed on the way out) and the next run of the shard redoes it."""
    if limits.deadline is None:
        return await attempt
    started = now()
    try:
        async with asyncio.timeout(limits.deadline - time.monotonic()):
            return await attempt
    except TimeoutError:
        return Record(instance_id=job.instance.instance_id, repo=job.instance.repo, sample=job.sample,
                      attempt=job.attempt, status=Status.NOT_ATTEMPTED, started_at=started, finished_at=now(),
                      error=ErrorInfo(kind="deadline", message="stopped at the shard's --deadline-minutes; "
                                      "run the shard again to resume it"))


async def run_one(job: Job, backend: Backend, solve: Solver, logs: Path, limits: Limits) -> Record:
    """One attempt at one job, always ending in a record: infrastructure trouble becomes
    `error` or `timeout`, never a wrong answer."""
    inst = job.instance
    started, t0 = now(), time.monotonic()
    timings = Timings()
    agent = AgentStats()
    patch = ""

    def record(**fields: object) -> Record:
        timings.total = time.monotonic() - t0
        return Record.model_validate({
            "instance_id": inst.instance_id, "repo": inst.repo, "sample": job.sample,
            "attempt": job.attempt, "patch": patch, "agent": agent, "timings": timings,
            "started_at": started, "finished_at": now(),
            "suspicious": suspicious(patch, inst.test_patch, inst.eval_script, inst.repo), **fields,
        })

    try:
        async with asyncio.timeout(limits.instance_timeout):
            t = time.monotonic()
            await backend.ensure_image(inst)
            timings.image = time.monotonic() - t
            t = time.monotonic()
            phase("agent")
            solution = await solve(job, backend, logs)
            timings.agent = time.monotonic() - t
            patch, agent = solution.patch, solution.agent
            if agent.exit_reason == "time_limit":
                return record(status=Status.TOO_SLOW, error=ErrorInfo(kind="time_limit", message=(
                    f"the agent's wall clock (--agent-timeout) cut it after {agent.steps} step(s): "
                    "the runner was too slow to reach a verdict")))
            async for try_ in AsyncRetrying(
                retry=retry_if_exception(lambda e: isinstance(e, InfraError) and e.transient),
                stop=stop_after_attempt(2), wait=wait_exponential(multiplier=1, max=10), reraise=True,
            ):
                with try_:
                    phase("grading")
                    graded = await grade(inst, patch, backend, logs, limits.eval_timeout)
            timings.eval = graded.eval_seconds
            return record(status=graded.status, tests=graded.tests, error=graded.error)
    except TimeoutError:
        # The agent and the tests have limits of their own that end in a verdict; reaching this
        # one means the machinery (a pull, a container, the model server) was stuck.
        message = f"instance ran longer than --instance-timeout {limits.instance_timeout:g}s"
        return record(status=Status.ERROR, error=ErrorInfo(kind="instance_timeout", message=message))
    except InfraError as exc:
        return record(status=Status.ERROR, error=ErrorInfo(kind=exc.kind, message=str(exc)))
    except Exception as exc:  # a bug of ours must not take the other instances down
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise  # a full disk is not this instance's: the shard stops (cli says it in one line)
        with suppress(OSError):  # the traceback is a courtesy; the record is what counts
            logs.mkdir(parents=True, exist_ok=True)
            (logs / "traceback.txt").write_text(traceback.format_exc(), encoding="utf-8")
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return record(status=Status.ERROR, error=ErrorInfo(kind="internal", message=message))

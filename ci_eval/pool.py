"""The async pool: schedule, time out, checkpoint, resume, shut down cleanly."""

from __future__ import annotations

import asyncio
import errno
import signal
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from ci_eval.contracts.shard import AgentStats, Record, Tests, Timings
from ci_eval.contracts.status import STATUS_OF, ErrorInfo, ErrorKind, ExitReason, Status
from ci_eval.errors import InfraError
from ci_eval.gaming import suspicious
from ci_eval.grading import Graded, grade
from ci_eval.instances import Instance
from ci_eval.progress import CURRENT, Display, Running, phase
from ci_eval.sandbox import Backend
from ci_eval.shard_folder import TRACEBACK, ResultStore, log_dir, now
from ci_eval.solver import Job, Solver

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Clocks:
    """What may stop an attempt by time: its wall clock, its tests', and the shard's deadline."""

    instance_timeout: float
    eval_timeout: float
    deadline: float | None = None  # time.monotonic() past which no job starts and running ones stop


class ModelGate:
    """While the model server is down no instance starts: the worker whose attempt found it down
    probes it (`probe`: with backoff, for a bounded time) and the others wait; if it does not come
    back the shard ends, what is left resumable, instead of failing every instance in seconds."""

    def __init__(self, probe: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.probe = probe
        self.lock = asyncio.Lock()
        self.gone = False

    async def may_start(self) -> bool:
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
    instances: Sequence[Instance], epochs: int, done: Mapping[tuple[str, int], Record], max_attempts: int
) -> list[Job]:
    """What is left: never run, or ended by an infrastructure failure with attempts to spare."""
    jobs = []
    for inst in instances:
        for epoch in range(epochs):
            last = done.get((inst.instance_id, epoch))
            if last is None:
                jobs.append(Job(inst, epoch))
            elif last.status == Status.NOT_ATTEMPTED:  # stopped by a deadline: its attempt did not count
                jobs.append(Job(inst, epoch, last.attempt))
            elif last.is_infra_failure and last.attempt < max_attempts:
                jobs.append(Job(inst, epoch, last.attempt + 1))
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


@dataclass
class Draft:
    """A record in the making: what one attempt has so far, whatever ends it."""

    job: Job
    started: str = field(default_factory=now)
    clock: float = field(default_factory=time.monotonic)
    timings: Timings = field(default_factory=Timings)
    patch: str = ""
    agent: AgentStats = field(default_factory=AgentStats)

    @contextmanager
    def timed(self, part: Literal["image", "agent"]) -> Iterator[None]:
        """The seconds of a part that ended (one that raised leaves its time at 0)."""
        began = time.monotonic()
        yield
        setattr(self.timings, part, time.monotonic() - began)

    def record(self, status: Status, error: ErrorInfo | None = None, tests: Tests | None = None) -> Record:
        inst = self.job.instance
        self.timings.total = time.monotonic() - self.clock
        return Record(instance_id=inst.instance_id, repo=inst.repo, epoch=self.job.epoch, attempt=self.job.attempt,
                      status=status, error=error, patch=self.patch, tests=tests or Tests(), agent=self.agent,
                      timings=self.timings, started_at=self.started, finished_at=now(),
                      suspicious=suspicious(self.patch, inst.test_patch, inst.eval_script, inst.repo))

    def ended(self, kind: ErrorKind, message: str) -> Record:
        """The record of an attempt that ended without a graded patch: its status from STATUS_OF."""
        return self.record(STATUS_OF[kind], ErrorInfo(kind=kind, message=message))


@dataclass
class Pool:
    """Jobs on `workers` concurrent tasks; each result is stored the moment it ends.

    Images are fetched a wave ahead; with `prune`, each is removed after its last job.
    Cancelled (by `until_signal`), no new job starts and the running ones are cancelled, their
    sandboxes removed on the way out; the store already holds every finished job, so running
    again resumes.
    """

    backend: Backend
    solve: Solver
    store: ResultStore
    root: Path  # the shard folder: each attempt's logs go below it
    clocks: Clocks
    show: Display
    workers: int = 1
    max_attempts: int = 1  # an attempt lost to a model server that came back is retried at once up to this
    gate: ModelGate = field(default_factory=ModelGate)
    prune: bool = False
    queue: deque[Job] = field(default_factory=deque, init=False)
    uses: Counter[str] = field(default_factory=Counter, init=False)  # jobs still to finish, per image
    upcoming: list[Instance] = field(default_factory=list, init=False)

    async def run(self, jobs: Sequence[Job]) -> None:
        self.queue.extend(jobs)
        self.uses.update(j.instance.image for j in jobs)
        self.upcoming = [j.instance for j in jobs]
        self.backend.prefetch(self.upcoming[: 2 * self.workers])
        tasks = [asyncio.create_task(self.worker()) for _ in range(min(self.workers, len(jobs)))]
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            self.queue.clear()  # no new job starts; the running ones wind down and remove their sandboxes
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome

    async def worker(self) -> None:
        while self.queue and not past(self.clocks.deadline) and await self.gate.may_start():
            job = self.take()
            record = await self.watched(job)
            self.store.append(record)
            self.show.update(record)
            if not await self.gate.after(record):
                return  # the model server stayed down: what is left waits for the next run
            await self.finished(job, record)

    def take(self) -> Job:
        job = self.queue.popleft()
        ahead = len(self.upcoming) - len(self.queue) + self.workers  # keep the job after this wave's image coming
        self.backend.prefetch(self.upcoming[ahead : ahead + 1])
        return job

    async def watched(self, job: Job) -> Record:
        """The attempt, shown as running and stopped at the shard's deadline."""
        run = Running(job.instance.instance_id + (f"#{job.epoch}" if job.epoch else ""))
        self.show.running.append(run)
        token = CURRENT.set(run)
        try:
            return await self.until_deadline(job)
        finally:
            CURRENT.reset(token)
            self.show.running.remove(run)

    async def finished(self, job: Job, record: Record) -> None:
        if record.model_server_failed and job.attempt < self.max_attempts:
            self.queue.appendleft(Job(job.instance, job.epoch, job.attempt + 1))  # it is back: try again now
            self.uses[job.instance.image] += 1
        self.uses[job.instance.image] -= 1
        if self.prune and self.uses[job.instance.image] == 0:  # its last job is done: free the disk
            await asyncio.to_thread(self.backend.remove_image, job.instance)

    async def until_deadline(self, job: Job) -> Record:
        """The attempt's record, or past the shard's deadline a `not_attempted` one: the attempt is
        cancelled (its sandboxes removed on the way out) and the next run of the shard redoes it."""
        if self.clocks.deadline is None:
            return await self.attempt(job)
        draft = Draft(job)
        try:
            async with asyncio.timeout(self.clocks.deadline - time.monotonic()):
                return await self.attempt(job)
        except TimeoutError:
            return draft.ended(ErrorKind.DEADLINE, "stopped at the shard's --deadline-minutes; run the shard "
                               "again to resume it")

    async def attempt(self, job: Job) -> Record:
        """One attempt at one job, always ending in a record: infrastructure trouble becomes
        `error` or `timeout`, never a wrong answer."""
        draft = Draft(job)
        logs = log_dir(self.root, job.instance.instance_id, job.epoch)
        try:
            async with asyncio.timeout(self.clocks.instance_timeout):
                return await self.solved_and_graded(draft, logs)
        except TimeoutError:
            # The agent and the tests have limits of their own that end in a verdict; reaching this
            # one means the machinery (a pull, a container, the model server) was stuck.
            return draft.ended(ErrorKind.INSTANCE_TIMEOUT,
                               f"instance ran longer than --instance-timeout {self.clocks.instance_timeout:g}s")
        except InfraError as exc:
            return draft.ended(ErrorKind(exc.kind), str(exc))
        except Exception as exc:  # a bug of ours must not take the other instances down
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise  # a full disk is not this instance's: the shard stops (cli says it in one line)
            with suppress(OSError):  # the traceback is a courtesy; the record is what counts
                logs.mkdir(parents=True, exist_ok=True)
                (logs / TRACEBACK).write_text(traceback.format_exc(), encoding="utf-8")
            return draft.ended(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}".splitlines()[0][:500])

    async def solved_and_graded(self, draft: Draft, logs: Path) -> Record:
        inst = draft.job.instance
        with draft.timed("image"):
            await self.backend.ensure_image(inst)
        phase("agent")
        with draft.timed("agent"):
            solution = await self.solve(draft.job, self.backend, logs)
        draft.patch, draft.agent = solution.patch, solution.agent
        if draft.agent.exit_reason == ExitReason.TIME_LIMIT:
            return draft.ended(ErrorKind.TIME_LIMIT, f"the agent's wall clock (--agent-timeout) cut it after "
                               f"{draft.agent.steps} step(s): the runner was too slow to reach a verdict")
        graded = await self.graded(inst, draft.patch, logs)
        draft.timings.eval = graded.eval_seconds
        return draft.record(graded.status, graded.error, graded.tests)

    async def graded(self, inst: Instance, patch: str, logs: Path) -> Graded:
        """The patch graded, once more after a transient failure of the machinery."""
        phase("grading")
        retrying = AsyncRetrying(retry=retry_if_exception(lambda e: isinstance(e, InfraError) and e.transient),
                                 stop=stop_after_attempt(2), wait=wait_exponential(multiplier=1, max=10), reraise=True)
        return await retrying(grade, inst, patch, self.backend, logs, self.clocks.eval_timeout)


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


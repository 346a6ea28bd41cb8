"""A progress bar on a terminal, one plain log line per instance in CI, and there a heartbeat
every few minutes: an instance can take 30 to 50 minutes, and a log that says nothing for that
long looks stuck."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ci_eval.contracts.shard import Record

HEARTBEAT_SECONDS = 180.0


@dataclass(eq=False)  # each job its own, however alike: the pool removes this one
class Running:
    """One job under way: the pool starts it and names its phase, the agent counts its steps."""

    label: str
    started: float = field(default_factory=time.monotonic)
    phase: str = "image"
    step: int = 0

    def describe(self, at: float) -> str:
        minutes, seconds = divmod(int(at - self.started), 60)
        step = f" step {self.step}" if self.step else ""
        return f"{self.label} {self.phase}{step} {minutes}m{seconds:02d}s"


CURRENT: ContextVar[Running | None] = ContextVar("ci_eval_running", default=None)  # the job of this task


def phase(name: str) -> None:
    if (run := CURRENT.get()) is not None:
        run.phase = name


def stepped(steps: int) -> None:
    if (run := CURRENT.get()) is not None:
        run.phase, run.step = "agent", steps


class Display(Protocol):
    running: list[Running]  # the jobs under way, the pool's to keep

    def update(self, record: Record) -> None: ...

    def beat(self) -> None: ...

    def close(self) -> None: ...


def line(record: Record, done: int, total: int) -> str:
    why = f"  ({record.error.kind}: {record.error.message})" if record.error else ""
    epoch = f"#{record.epoch}" if record.epoch else ""
    return f"[{done}/{total}] {record.status:<12} {record.instance_id}{epoch}  {record.timings.total:.1f}s{why}"


class PlainLog:
    def __init__(self, total: int, done: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, done, stream
        self.running: list[Running] = []

    def beat(self) -> None:
        if self.running:
            at = time.monotonic()
            now = "; ".join(r.describe(at) for r in self.running)
            print(f"ci-eval: [{self.done}/{self.total}] running {now}", file=self.stream, flush=True)

    def update(self, record: Record) -> None:
        self.done += 1
        print(line(record, self.done, self.total), file=self.stream, flush=True)

    def close(self) -> None:
        return None


class Bar:
    def __init__(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.counts: dict[str, int] = {}
        self.running: list[Running] = []
        self.progress = Progress(
            TextColumn("[bold]ci-eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), console=Console(stderr=True), transient=False,
        )
        self.task = self.progress.add_task("", total=total, completed=done)
        self.progress.start()

    def update(self, record: Record) -> None:
        self.done += 1
        self.counts[record.status] = self.counts.get(record.status, 0) + 1
        self.progress.console.print(line(record, self.done, self.total), highlight=False)
        summary = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        self.progress.update(self.task, advance=1, description=summary)

    def beat(self) -> None:
        return None  # the bar's clock moves by itself

    def close(self) -> None:
        self.progress.stop()


def display(total: int, done: int) -> Display:
    if sys.stderr.isatty() and not os.environ.get("CI"):
        return Bar(total, done)
    return PlainLog(total, done)


async def heartbeat(show: Display, every: float = HEARTBEAT_SECONDS) -> None:
    """Until cancelled: every `every` seconds, what runs, in which phase and step, for how long."""
    while True:
        await asyncio.sleep(every)
        show.beat()

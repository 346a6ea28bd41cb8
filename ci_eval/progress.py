"""A progress bar on a terminal, one plain log line per instance in CI."""

from __future__ import annotations

import os
import sys
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ci_eval.contracts import Record


class Display(Protocol):
    def update(self, record: Record) -> None: ...

    def close(self) -> None: ...


def line(record: Record, done: int, total: int) -> str:
    why = f"  ({record.error.kind}: {record.error.message})" if record.error else ""
    sample = f"#{record.sample}" if record.sample else ""
    return f"[{done}/{total}] {record.status:<12} {record.instance_id}{sample}  {record.timings.total:.1f}s{why}"


class PlainLog:
    def __init__(self, total: int, done: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, done, stream

    def update(self, record: Record) -> None:
        self.done += 1
        print(line(record, self.done, self.total), file=self.stream, flush=True)

    def close(self) -> None:
        return None


class Bar:
    def __init__(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.counts: dict[str, int] = {}
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

    def close(self) -> None:
        self.progress.stop()


def display(total: int, done: int) -> Display:
    if sys.stderr.isatty() and not os.environ.get("CI"):
        return Bar(total, done)
    return PlainLog(total, done)

"""A command's output, bounded: the head and the tail are kept, the middle is counted; past its
flood limit a sandbox stops the command (Docker's where it runs, the local one from here)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

KEEP = 1024 * 1024  # bytes of an agent command's output kept in memory (the model sees far less)
FLOOD = 32 * 1024 * 1024  # an agent command is stopped once it has printed this much
EVAL_KEEP = 8 * 1024 * 1024  # the test log: the parser reads its tail, where the summary is
EVAL_FLOOD = 256 * 1024 * 1024  # no test suite of SWE-bench prints a fraction of this


@dataclass(frozen=True)
class OutputCap:
    keep: int = KEEP
    flood: int = FLOOD


AGENT = OutputCap()
EVAL = OutputCap(EVAL_KEEP, EVAL_FLOOD)


@dataclass(frozen=True)
class Output:
    returncode: int
    output: str  # stdout and stderr interleaved, decoded with replacement of bad bytes
    timed_out: bool
    seconds: float
    dropped: int = 0  # bytes printed but not kept (cut from the middle)
    flooded: bool = False  # stopped for printing more than its limit allowed


class Capture:
    """The first quarter and the last three quarters of `keep` bytes of a stream."""

    def __init__(self, cap: OutputCap) -> None:
        self.cap = cap
        self.head_room = cap.keep // 4
        self.tail_room = cap.keep - self.head_room
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_room - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail.append(chunk)
        self.tail_size += len(chunk)
        # Whole chunks only: trimming bytes off the front of one would copy the tail each time.
        while self.tail_size - len(self.tail[0]) >= self.tail_room:
            self.tail_size -= len(self.tail.popleft())

    @property
    def flooded(self) -> bool:
        return self.total >= self.cap.flood

    def result(self, returncode: int, timed_out: bool, seconds: float) -> Output:
        tail = b"".join(self.tail)[-self.tail_room :] if self.tail else b""
        dropped = self.total - len(self.head) - len(tail)
        text = self.head.decode("utf-8", errors="replace")
        if dropped:
            text += f"\n[ci-eval: {dropped} bytes of output dropped here]\n"
        text += tail.decode("utf-8", errors="replace")
        if self.flooded:
            text += f"\n[ci-eval: the command was stopped after printing {self.total} bytes]\n"
        return Output(returncode, text, timed_out, seconds, dropped, self.flooded)

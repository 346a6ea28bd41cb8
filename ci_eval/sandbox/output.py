"""A command's output, bounded: the head and the tail are kept, the middle is counted, and a
command that floods is stopped where it runs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

KEEP = 1024 * 1024  # bytes of an agent command's output kept in memory (the model sees far less)
FLOOD = 32 * 1024 * 1024  # an agent command is stopped once it has printed this much
EVAL_KEEP = 8 * 1024 * 1024  # the test log: the parser reads its tail, where the summary is
EVAL_FLOOD = 256 * 1024 * 1024  # no test suite of SWE-bench prints a fraction of this
KILL_GRACE = 5  # seconds between TERM and KILL when a command runs out of time


@dataclass(frozen=True)
class Limit:
    keep: int = KEEP
    flood: int = FLOOD


AGENT = Limit()
EVAL = Limit(EVAL_KEEP, EVAL_FLOOD)


@dataclass(frozen=True)
class Output:
    returncode: int
    output: str  # stdout and stderr interleaved, decoded with replacement of bad bytes
    timed_out: bool
    seconds: float
    dropped: int = 0  # bytes printed but not kept (cut from the middle)
    flooded: bool = False  # stopped for printing more than its limit allowed


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


class Capture:
    """The first quarter and the last three quarters of `keep` bytes of a stream."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.head_room = limit.keep // 4
        self.tail_room = limit.keep - self.head_room
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
        return self.total >= self.limit.flood

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

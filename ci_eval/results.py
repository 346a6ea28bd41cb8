"""A shard folder's files: results.jsonl (one `contracts.Record` a line, append-only), its
manifest.json, and the lock that keeps one writer on it."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ci_eval.contracts import Manifest, Record, Status, UnreadableLine, read_manifest
from ci_eval.errors import InputError, one_line
from ci_eval.layout import LOCK, MANIFEST, RESULTS, read_inside


@contextmanager
def only_writer(folder: Path) -> Iterator[None]:
    """Hold the shard folder for this process alone: a second ci-eval on it is one line naming
    the first, not two writers sweeping each other's containers and doubling results.jsonl.
    The kernel drops the lock with the process, however it ends."""
    path = folder / LOCK
    with path.open("a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise InputError(f"{folder} is in use by another ci-eval (pid {holder}); wait for it to end or use "
                             "another --output") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ResultStore:
    """results.jsonl: one line per finished attempt, flushed and fsynced as it ends.

    The newest line for an (instance, sample) is its result. A run killed mid-write can leave a
    torn last line; opening the store cuts it off so that appends start on a clean line.
    """

    def __init__(self, folder: Path, run: str | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / RESULTS
        self.run = run  # every record is stamped with it; a resume keeps only records with it
        self._repair()
        self._file = self.path.open("a", encoding="utf-8")

    def latest(self) -> dict[tuple[str, int], Record]:
        return self.resume()[0]

    def resume(self) -> tuple[dict[tuple[str, int], Record], int]:
        """This run's newest record per job, and how many lines another run wrote (another
        configuration, or before records were stamped), from one read of the file."""
        records = read_records(self.path)
        mine = [r for r in records if self.run is None or r.run == self.run]
        return {r.key: r for r in mine}, len(records) - len(mine)

    def append(self, record: Record) -> None:
        if self.run is not None:
            record = record.model_copy(update={"run": self.run})
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            with self.path.open("r+b") as f:
                f.truncate(cut)


def scan_records(path: Path) -> tuple[list[Record], list[UnreadableLine]]:
    """Every record of a results file, oldest first, and every line that is not one.

    Only a torn last line (no newline: the writer was killed mid-line) is cut silently; every
    line is written whole, so anything else that does not read is damage worth naming.
    """
    if not path.exists() and not path.is_symlink():
        return [], [UnreadableLine(file=str(path), line=0, reason="results.jsonl is missing")]
    data = read_inside(path.parent, path)
    if data is None:
        return [], [UnreadableLine(file=str(path), line=0, reason="results.jsonl is not a regular file")]
    lines = data.split(b"\n")
    if lines and lines[-1]:
        lines.pop()  # torn
    records, unreadable = [], []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = Record.model_validate_json(raw)
        except ValueError as exc:
            unreadable.append(UnreadableLine(file=str(path), line=number, reason=one_line(exc),
                                             instance_id=_id_of(raw)))
            continue
        untrue = impossible(record)
        if untrue:
            unreadable.append(UnreadableLine(file=str(path), line=number, reason=untrue,
                                             instance_id=record.instance_id))
        else:
            records.append(record)
    return records, unreadable


def impossible(record: Record) -> str:
    """Why a record cannot be what grading writes ("" when it can): resolved means a patch that
    applied and made every FAIL_TO_PASS and PASS_TO_PASS test pass, so an artifact that says
    resolved with no patch or no passing test was not written by a grader."""
    if record.status != Status.RESOLVED:
        return ""
    tests = record.tests
    if not record.patch.strip():
        return "a resolved record with an empty patch cannot be true"
    if tests.FAIL_TO_PASS.failure or tests.PASS_TO_PASS.failure:
        return "a resolved record with failing tests cannot be true"
    if not tests.FAIL_TO_PASS.success and not tests.PASS_TO_PASS.success:
        return "a resolved record without one passing test cannot be true"
    return ""


def _id_of(raw: bytes) -> str | None:
    try:
        iid = json.loads(raw).get("instance_id")
    except (ValueError, AttributeError):
        return None
    return iid if isinstance(iid, str) else None


def read_records(path: Path) -> list[Record]:
    """The records of a results file (a torn last line cut, a damaged line left out)."""
    return scan_records(path)[0]


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write manifest.json atomically, refusing to mix two configurations in one folder, or to
    adopt results no manifest says the origin of."""
    path = folder / MANIFEST
    results = folder / RESULTS
    if not path.exists() and results.exists() and results.stat().st_size:
        raise InputError(f"{folder} has results.jsonl but no manifest.json, so nothing says which run wrote them; "
                         "use another --output, or delete the folder to start over")
    if path.exists():
        old = read_manifest(path)
        if old.identity.get("config_hash") != manifest.identity["config_hash"]:
            raise InputError(
                f"{folder} holds results of another configuration (config hash {old.identity.get('config_hash')}); "
                "use another --output or delete the folder"
            )
        if old.planned != manifest.planned:
            raise InputError(f"{folder} holds results of another shard plan; use another --output")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)

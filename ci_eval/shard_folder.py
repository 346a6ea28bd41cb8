"""A shard folder, read and written here alone: the name of every file in it; every path below
it, none able to leave it whatever an instance id says; the lock that keeps one writer on it; its
append-only results.jsonl (one `Record` a line) and its manifest.json; and the one reader that
finds the shard folders below an artifact's root and gives each as a ShardRun, records and log
tails in it, so that nothing after it goes back to disk."""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ci_eval.contracts.shard import Manifest, Record, Trajectory, UnreadableLine
from ci_eval.contracts.status import Status
from ci_eval.document import read_document
from ci_eval.errors import InputError, one_line
from ci_eval.github import in_actions, run_attempt


def default_folder(index: int) -> Path:
    """Where shard `index` writes when --output does not say."""
    return Path("ci-eval-results") / f"shard-{index}"


# The shard folder's own files.
RESULTS = "results.jsonl"  # one Record a line
MANIFEST = "manifest.json"
LOCK = ".lock"  # held by the one process writing the folder
WRITE_PROBE = ".ci-eval-write-test"  # made and removed before any work: the folder takes files
LOCAL_MODEL_LOG = "local-model.log"  # llama.cpp's output, with --local-model

LOGS = "logs"  # below the shard folder: logs/<id>/epoch-<k>/

# The files of one attempt, in its log_dir.
PATCH = "patch.diff"
APPLY_LOG = "apply.log"
TEST_LOG = "test_output.txt"
TRAJECTORY = "trajectory.json"
TRACEBACK = "traceback.txt"  # a bug of ci-eval's that ended the attempt


def within(root: Path, *parts: str) -> Path:
    """root/parts…, refused when it would resolve outside root (`..`, an absolute part, a link)."""
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or path == base:
        raise InputError(f"refusing to write {'/'.join(parts)!r} outside {root}; check the instance ids")
    return path


def epoch_folder(epoch: int) -> str:
    """The folder of an epoch's attempt below logs/<id>/ (`sample-<k>` before schema version 2)."""
    return f"epoch-{epoch}"


def log_dir(root: Path, instance_id: str, epoch: int) -> Path:
    """logs/<id>/epoch-<k>/: the patch, apply log, test log and trajectory of one attempt."""
    return within(root / LOGS, instance_id, epoch_folder(epoch))


def unlinked(root: Path, path: Path) -> bool:
    """Whether `path` lies inside root with no symbolic link on the way to it, itself included:
    what an artifact holds, not what it points at."""
    try:
        inner = path.relative_to(root)
    except ValueError:
        return False
    here = root
    for part in inner.parts:
        here = here / part
        if part == ".." or here.is_symlink():
            return False
    return True


def read_inside(root: Path, path: Path, tail: int | None = None) -> bytes | None:
    """The bytes of a regular file that lies inside root itself (None when it is not one): no
    symbolic link on the way, neither in the folders nor at the file (O_NOFOLLOW, against one
    made after the look), so that an artifact cannot make the aggregate read a file of the host.
    `tail`: only its last bytes."""
    if not unlinked(root, path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        if tail is not None:
            f.seek(max(0, info.st_size - tail))
        return f.read()


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

    The newest line for an (instance, epoch) is its result. A run killed mid-write can leave a
    torn last line; opening the store cuts it off so that appends start on a clean line.
    """

    def __init__(self, folder: Path, config_hash: str | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / RESULTS
        self.config_hash = config_hash  # every record is stamped with it; a resume keeps only records with it
        self._repair()
        self._file = self.path.open("a", encoding="utf-8")

    def latest(self) -> dict[tuple[str, int], Record]:
        return self.resume()[0]

    def resume(self) -> tuple[dict[tuple[str, int], Record], int]:
        """This run's newest record per job, and how many lines another run wrote (another
        configuration, or before records were stamped), from one read of the file."""
        records = read_records(self.path)
        mine = [r for r in records if self.config_hash is None or r.config_hash == self.config_hash]
        return {r.key: r for r in mine}, len(records) - len(mine)

    def append(self, record: Record) -> None:
        if self.config_hash is not None:
            record = record.model_copy(update={"config_hash": self.config_hash})
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


def read_manifest(path: Path) -> Manifest:
    return read_document(path, Manifest, "a ci-eval manifest", "remove it or fix it")


def read_trajectory(path: Path) -> Trajectory:
    return read_document(path, Trajectory, "a ci-eval trajectory", "give an agent run's trajectory.json")


@dataclass
class ShardRun:
    """One shard folder as read: its manifest, its records, and the tail of the log that says why
    each instance failed (of its first attempt that was not resolved)."""

    folder: Path
    manifest: Manifest
    records: dict[tuple[str, int], Record]
    unreadable: list[UnreadableLine] = field(default_factory=list)
    refused: str = ""  # why this folder is not taken as the shard it claims to be
    artifact: Path | None = None  # the artifact's folder (the first below the root), when named as one
    log_tails: dict[str, str] = field(default_factory=dict)  # instance id -> the end of its failing log

    @property
    def index(self) -> int:
        return self.manifest.shard.index

    @property
    def run_attempt(self) -> int:
        return self.manifest.shard.run_attempt


# What paths.sh and the shard action name a shard's folder and artifact.
NAMED = re.compile(r"(?:.+-)?shard-(\d+)-attempt-(\d+)")


def find_shards(paths: Iterable[Path]) -> list[ShardRun]:
    """Every shard folder below the paths: one folder per artifact, or all merged into one."""
    runs = []
    for root in paths:
        if not root.exists():
            raise InputError(f"{root} does not exist")
        for manifest in sorted(root.rglob(MANIFEST)):
            if not unlinked(root, manifest):
                continue
            data = read_manifest(manifest)
            records, unreadable = scan_records(manifest.parent / RESULTS)
            # a line stamped by another run (its folder reused) is not this shard's result
            own = data.identity.get("config_hash")
            records = [r for r in records if r.config_hash is None or r.config_hash == own]
            parts = manifest.parent.relative_to(root).parts
            artifact = root / parts[0] if parts and NAMED.fullmatch(parts[0]) else None
            runs.append(ShardRun(manifest.parent, data, {r.key: r for r in records}, unreadable,
                                 _refusal(root, manifest.parent, data), artifact, log_tails(manifest.parent, records)))
    return _one_per_artifact(runs)


LOG_TAIL_LINES, LOG_TAIL_BYTES = 30, 4096  # of a failing instance's log, into the report and JUnit


def log_tails(folder: Path, records: list[Record]) -> dict[str, str]:
    """For each instance whose first attempt (the lowest epoch) did not resolve it, the end of
    what says why: the test log, else the patch-apply log (regular files inside the shard folder
    only: an artifact's link to a host file is not followed)."""
    first: dict[str, Record] = {}
    for record in sorted(records, key=lambda r: r.key, reverse=True):
        first[record.instance_id] = record
    tails = {}
    for iid, record in first.items():
        if record.status == Status.RESOLVED:
            continue
        logs = folder / LOGS / iid  # an id that leaves the folder reads nothing
        for name in (TEST_LOG, APPLY_LOG):
            data = next((d for sub in (epoch_folder(record.epoch), f"sample-{record.epoch}")  # and older folders'
                         if (d := read_inside(folder, logs / sub / name, tail=LOG_TAIL_BYTES)) is not None), None)
            if data is not None:
                tails[iid] = "\n".join(data.decode("utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:])
                break
    return tails


def _refusal(root: Path, folder: Path, manifest: Manifest) -> str:
    """Why a folder is not the shard its manifest claims: the artifact's or the folder's name
    names another shard or attempt, or the attempt is later than this workflow run's."""
    shard = manifest.shard
    for name in {*folder.relative_to(root).parts, folder.name}:
        match = NAMED.fullmatch(name)
        if match and (int(match[1]), int(match[2])) != (shard.index, shard.run_attempt):
            return f"{folder} holds the manifest of shard {shard.index} attempt {shard.run_attempt}, but lies in {name}"
    if in_actions() and shard.run_attempt > run_attempt():
        return (f"{folder} claims attempt {shard.run_attempt} of shard {shard.index}; this run is at attempt "
                f"{run_attempt()}")
    return ""


def _one_per_artifact(runs: list[ShardRun]) -> list[ShardRun]:
    """An artifact holds one shard: a second manifest in it is not taken (the first, by path, is)."""
    seen: dict[Path, ShardRun] = {}
    for run in sorted(runs, key=lambda r: (len(r.folder.parts), str(r.folder))):  # the shallowest first
        artifact = run.artifact
        if artifact is None or run.refused:
            continue
        if artifact in seen:
            run.refused = f"{run.folder} is a second shard folder in the artifact {artifact.name}"
        else:
            seen[artifact] = run
    return runs



"""Where a run's files go and what they are called: every name of a file ci-eval writes is
here, and every path below the shard folder is built here, none of them able to leave it,
whatever an instance id says."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ci_eval.errors import InputError


def shard_folder(index: int) -> Path:
    """Where shard `index` writes when --output does not say."""
    return Path("ci-eval-results") / f"shard-{index}"


# The shard folder's own files.
RESULTS = "results.jsonl"  # one Record a line
MANIFEST = "manifest.json"
LOCK = ".lock"  # held by the one process writing the folder
WRITE_PROBE = ".ci-eval-write-test"  # made and removed before any work: the folder takes files
LOCAL_MODEL_LOG = "local-model.log"  # llama.cpp's output, with --local-model

LOGS = "logs"  # below the shard folder: logs/<id>/sample-<k>/

# The files of one attempt, in its log_dir.
PATCH = "patch.diff"
APPLY_LOG = "apply.log"
TEST_LOG = "test_output.txt"
TRAJECTORY = "trajectory.json"
TRACEBACK = "traceback.txt"  # a bug of ci-eval's that ended the attempt

# What `ci-eval aggregate` writes.
REPORT = "report.json"
JUNIT = "junit.xml"
SUMMARY = "summary.md"
COMMENT = "comment.md"  # the pull-request comment, for the comment action


def within(root: Path, *parts: str) -> Path:
    """root/parts…, refused when it would resolve outside root (`..`, an absolute part, a link)."""
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or path == base:
        raise InputError(f"refusing to write {'/'.join(parts)!r} outside {root}; check the instance ids")
    return path


def log_dir(root: Path, instance_id: str, sample: int) -> Path:
    """logs/<id>/sample-<k>/: the patch, apply log, test log and trajectory of one attempt."""
    return within(root / LOGS, instance_id, f"sample-{sample}")


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

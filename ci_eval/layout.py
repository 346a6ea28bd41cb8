"""Where a shard's files go: every path below the shard folder is built here, and none of them
can leave it, whatever an instance id says."""

from __future__ import annotations

from pathlib import Path

from ci_eval.errors import InputError

# The files of one attempt, in its log_dir.
PATCH = "patch.diff"
APPLY_LOG = "apply.log"
TEST_LOG = "test_output.txt"
TRAJECTORY = "trajectory.json"


def within(root: Path, *parts: str) -> Path:
    """root/parts…, refused when it would resolve outside root (`..`, an absolute part, a link)."""
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or path == base:
        raise InputError(f"refusing to write {'/'.join(parts)!r} outside {root}; check the instance ids")
    return path


def log_dir(root: Path, instance_id: str, sample: int) -> Path:
    """logs/<id>/sample-<k>/: the patch, apply log, test log and trajectory of one attempt."""
    return within(root / "logs", instance_id, f"sample-{sample}")

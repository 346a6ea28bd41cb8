"""Predictions in the official SWE-bench format: `gold`, or a .json/.jsonl file of patches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ci_eval.dataset import read_json
from ci_eval.errors import InputError
from ci_eval.instances import Instance, check_text
from ci_eval.sandbox import Backend
from ci_eval.solver import Job, Solution, Solver


def load_predictions(source: str, instances: Sequence[Instance]) -> dict[str, str]:
    """Map every planned instance id to its patch ("" where the prediction has none)."""
    if source == "gold":
        return {inst.instance_id: inst.patch for inst in instances}
    rows = _read(Path(source))
    patches: dict[str, str] = {}
    twice: list[str] = []
    for number, row in enumerate(rows, start=1):
        iid, patch = _checked(row, number, source)
        if iid in patches:
            twice.append(iid)
        patches[iid] = patch
    if twice:
        shown = ", ".join(sorted(set(twice))[:10])
        raise InputError(f"{source} has more than one prediction for: {shown}; keep one per instance")
    missing = [inst.instance_id for inst in instances if inst.instance_id not in patches]
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise InputError(
            f"{source} has no prediction for {len(missing)} planned instance(s): {shown}; "
            "add them or restrict the run with --instance-ids"
        )
    return patches


def solver(patches: dict[str, str]) -> Solver:
    """Each job's patch, looked up: no sandbox, no model."""

    async def from_predictions(job: Job, backend: Backend, logs: Path) -> Solution:
        return Solution(patch=patches[job.instance.instance_id])

    return from_predictions


def _checked(row: Any, number: int, source: str) -> tuple[str, str]:
    """One prediction's id and patch, or a one-line error naming it: a patch that is not text
    must stop the run before it starts, not crash a worker half-way."""
    if not isinstance(row, dict) or not isinstance(row.get("instance_id"), str):
        raise InputError(f"{source}: prediction {number} has no instance_id (a string)")
    iid, patch = row["instance_id"], row.get("model_patch", ...)
    if patch is ...:
        raise InputError(f"{source}: prediction {number} ({iid[:60]!r}) has no model_patch")
    if patch is not None and not isinstance(patch, str):
        raise InputError(f"{source}: prediction {number} ({iid[:60]!r}): model_patch is a {type(patch).__name__}, "
                         "not a string (or null)")
    try:
        check_text(iid, "instance_id")
        check_text(patch, "model_patch")
    except ValueError as exc:
        raise InputError(f"{source}: prediction {number}: {exc}") from None
    return iid, patch or ""


def _read(path: Path) -> list[Any]:
    if not path.is_file():
        raise InputError(f"predictions file {path} does not exist (or pass --predictions gold)")
    data = read_json(path)
    # SWE-agent writes {instance_id: prediction}; the official harness accepts both.
    return list(data.values()) if isinstance(data, dict) else list(data)

"""Predictions in the official SWE-bench format: `gold`, or a .json/.jsonl file of patches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ci_eval.errors import InputError
from ci_eval.instances import Instance, read_json


def load_predictions(source: str, instances: Sequence[Instance]) -> dict[str, str]:
    """Map every planned instance id to its patch ("" where the prediction has none)."""
    if source == "gold":
        return {inst.instance_id: inst.patch for inst in instances}
    rows = _read(Path(source))
    patches: dict[str, str] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "instance_id" not in row:
            raise InputError(f"{source}: prediction {number} has no instance_id")
        if "model_patch" not in row:
            raise InputError(f"{source}: prediction {number} ({row['instance_id']}) has no model_patch")
        patches[row["instance_id"]] = row["model_patch"] or ""
    missing = [inst.instance_id for inst in instances if inst.instance_id not in patches]
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        raise InputError(
            f"{source} has no prediction for {len(missing)} planned instance(s): {shown}; "
            "add them or restrict the run with --instance-ids"
        )
    return patches


def _read(path: Path) -> list[Any]:
    if not path.is_file():
        raise InputError(f"predictions file {path} does not exist (or pass --predictions gold)")
    data = read_json(path)
    # SWE-agent writes {instance_id: prediction}; the official harness accepts both.
    return list(data.values()) if isinstance(data, dict) else list(data)

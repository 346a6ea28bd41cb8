"""`ci-eval export`: the patches of a run as the official predictions file, for swebench's
run_evaluation or sb-cli (a JSON list of instance_id, model_name_or_path, model_patch)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ci_eval.errors import InputError
from ci_eval.report.merge import merge
from ci_eval.shard_folder import find_shards


def export(paths: Sequence[Path], out: Path, *, epoch: int = 0, model_name: str | None = None) -> int:
    """Write every attempted instance's patch of `epoch`; returns how many were written."""
    merged = merge(find_shards(paths), allow_partial=True)
    if not 0 <= epoch < merged.epochs:
        raise InputError(f"--epoch {epoch} is out of range: the run has epochs 0..{merged.epochs - 1}")
    name = model_name or str(merged.identity.get("model") or "ci-eval")
    predictions: list[dict[str, Any]] = [
        {"instance_id": iid, "model_name_or_path": name, "model_patch": record.patch}
        for iid in merged.planned if (record := merged.records.get((iid, epoch))) is not None
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(predictions, indent=1) + "\n", encoding="utf-8")
    return len(predictions)

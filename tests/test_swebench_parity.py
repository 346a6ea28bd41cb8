"""ci-eval and swebench's own run_evaluation agree on the fixtures, gold patches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ci_eval.shard import run_shard
from tests.conftest import INSTANCES, ours, rows, settings

pytestmark = pytest.mark.docker


def test_same_resolved_set_as_run_evaluation(
    docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swebench.harness.run_evaluation import main as run_evaluation

    monkeypatch.chdir(tmp_path)  # swebench writes logs/ relative to the working directory
    report_path = run_evaluation(
        dataset_name=str(INSTANCES), split="test", instance_ids=[], predictions_path="gold",
        max_workers=2, open_file_limit=4096, run_id="parity", timeout=300,
        rewrite_reports=False, modal=False, report_dir=str(tmp_path),
    )
    theirs = json.loads(Path(report_path).read_text())
    assert theirs["completed_instances"] == len(rows())

    ours_result = run_shard(settings(tmp_path, predictions="gold", sandbox="docker"), 0, 1)
    resolved = {r.instance_id for r in ours_result.records.values() if r.status == "resolved"}
    assert resolved == set(theirs["resolved_ids"])
    assert resolved == {row["instance_id"] for row in rows()}
    assert ours(docker_client, ours_result.folder) == []

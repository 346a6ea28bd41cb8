"""The Docker-free path: the bundled demo works with Python alone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ci_eval.sandbox.local import LocalSandbox
from ci_eval.shard import run_shard
from tests.conftest import FIXTURES, rows, settings, write_predictions


def test_gold_and_wrong_patches_locally(tmp_path: Path) -> None:
    result = run_shard(settings(tmp_path, predictions="gold", sandbox="local", repos_dir=FIXTURES / "repos"), 0, 1)
    assert {r.instance_id: r.status for r in result.records.values()} == {
        row["instance_id"]: "resolved" for row in rows()}
    textkit_fix = rows()[3]["patch"]  # a patch for the other repository cannot apply
    preds = write_predictions(tmp_path / "p.jsonl", {"ci-eval-fixtures__calc-2": textkit_fix})
    other = settings(tmp_path / "b", predictions=str(preds), sandbox="local", instance_ids=["ci-eval-fixtures__calc-2"],
                     repos_dir=FIXTURES / "repos", eval_timeout=60)
    assert run_shard(other, 0, 1).records[("ci-eval-fixtures__calc-2", 0)].status == "patch_failed"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    (tmp_path / "testbed").mkdir()
    box = LocalSandbox(tmp_path)
    marker = tmp_path / "child-survived"
    start = time.monotonic()
    out = asyncio.run(box.execute(f"(sleep 3; touch {marker}) & echo started; sleep 60", timeout=1))
    assert out.timed_out and "started" in out.output and time.monotonic() - start < 10
    time.sleep(3.5)
    assert not marker.exists()


def test_default_output_is_a_folder_per_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = settings(tmp_path, predictions="gold", sandbox="local", repos_dir=FIXTURES / "repos", output=None,
                   instance_ids=["ci-eval-fixtures__calc-2", "ci-eval-fixtures__textkit-5"])
    assert run_shard(cfg, 1, 2).folder == Path("ci-eval-results") / "shard-1"
    assert (tmp_path / "ci-eval-results" / "shard-1" / "results.jsonl").read_text().count("\n") == 1


def test_a_flood_ends_every_time(tmp_path: Path) -> None:
    """`yes` floods: its group is killed and what is still in the pipe drained to EOF, so the
    command ends. Three floods at once, 4 times, while another task hogs the event loop (as a
    busy shard does, so that the readers fall behind and their pipes pause): none may hang."""
    (tmp_path / "testbed").mkdir()
    sandbox = LocalSandbox(tmp_path)

    async def hog(stop: asyncio.Event) -> None:
        while not stop.is_set():
            time.sleep(0.01)  # the loop is blocked: readers fall behind, buffers fill
            await asyncio.sleep(0)

    async def floods() -> list[bool]:
        stop = asyncio.Event()
        busy = asyncio.create_task(hog(stop))
        ended = []
        for _ in range(4):
            outs = await asyncio.wait_for(asyncio.gather(*(sandbox.execute("yes", 60) for _ in range(3))), 60)
            ended += [o.flooded for o in outs]
        stop.set()
        await busy
        return ended

    assert asyncio.run(floods()) == [True] * 12

"""Workers and step prices follow the machine: GitHub's public-repository runner (4 vCPU, 16 GB)
and the private one (2 vCPU, 7 GB), as read at the start or named with --machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.config import load_settings
from ci_eval.history import read_report
from ci_eval.machine import MODEL_GB, Machine, here, named, step_seconds, workers_for
from ci_eval.partition import INSTANCE_OVERHEAD, costs_for, measured_step
from tests.conftest import INSTANCES, rows
from tests.test_cli import run

PUBLIC, PRIVATE = Machine(4, 16.0), Machine(2, 7.0)


def test_a_small_runner_runs_one_worker_and_prices_its_steps_slower() -> None:
    assert workers_for(PUBLIC, 4.0, MODEL_GB) == 2
    assert workers_for(PRIVATE, 4.0, MODEL_GB) == 1  # 4.2 GB of model and a 4 GB container leave no room
    assert workers_for(PRIVATE, 1.0, 0.0) == 1  # two cores: one worker, whatever the memory
    assert workers_for(Machine(16, 64.0), 4.0, MODEL_GB) == 2  # the default's ceiling
    assert step_seconds(PUBLIC, 2) == pytest.approx(70.0) and step_seconds(PRIVATE, 1) == pytest.approx(100.0)


def test_the_machine_is_read_or_named(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        7340032 kB\nMemFree:         1000 kB\n")
    read = here(meminfo)
    assert read.memory_gb == pytest.approx(7.0) and read.cores == len(os.sched_getaffinity(0))
    assert named("2x7") == PRIVATE and named(None).cores == read.cores


@pytest.mark.parametrize(("spec", "overrides", "workers"), [
    ("4x16", {}, 2),
    ("2x7", {}, 1),
    ("2x7", {"workers": 2}, 2),  # a given number stands
    ("8x16", {"base_url": "https://models.example.com/v1"}, 2),  # the model's memory is elsewhere
])
def test_unset_workers_follow_the_machine(monkeypatch: pytest.MonkeyPatch, spec: str, overrides: dict[str, object],
                                          workers: int) -> None:
    monkeypatch.setenv("CI_EVAL_MACHINE", spec)
    assert load_settings(overrides).workers == workers
    bad = CliRunner().invoke(main, ["plan", "--of", "1", "--dataset", str(INSTANCES), "--machine", "two"])
    assert bad.exit_code == 2 and "CORESxGB" in bad.output


def test_a_plan_for_a_private_runner_takes_more_shards() -> None:
    """The same budget on the two runners of GitHub: one worker at 100 s a step against two at 70 s."""
    def shards(spec: str) -> int:
        done = CliRunner().invoke(main, ["plan", "--budget-minutes", "120", "--dataset", str(INSTANCES),
                                         "--machine", spec])
        assert done.exit_code == 0, done.output
        return len(json.loads(done.stdout)["include"])

    assert shards("4x16") < shards("2x7")


def test_an_earlier_reports_seconds_per_step_price_the_instances_it_did_not_run(tmp_path: Path) -> None:
    out = tmp_path / "shard"
    made = run("shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--predictions", "gold",
               "--sandbox", "local", "--output", str(out))
    assert made.returncode == 0, made.stderr
    assert run("aggregate", str(out), "--output", str(tmp_path / "report")).returncode == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    ids = sorted(report["instances"])
    for iid in ids[:3]:  # an agent's run: 20 steps at 90 s, and the pull and the tests
        report["instances"][iid].update(steps=20, time=INSTANCE_OVERHEAD + 20 * 90.0)
    for iid in ids[3:]:
        del report["instances"][iid]
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(report))
    assert measured_step(read_report(path)) == pytest.approx(90.0)
    from ci_eval.dataset import load_instances

    costs = costs_for(load_instances(str(INSTANCES)), path)
    steps = {"<15 min fix": 25, "15 min - 1 hour": 30}
    for row in rows():
        expected = INSTANCE_OVERHEAD + (20 if row["instance_id"] in ids[:3] else steps[row["difficulty"]]) * 90.0
        assert costs[row["instance_id"]] == pytest.approx(expected), row["instance_id"]

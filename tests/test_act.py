"""The real workflows, run for real: `evaluate.yml` (plan → 2 shards → aggregate) by hand with
and without `shards`, and the README's pull-request example on a labelled pull request, under
nektos/act with the real pinned actions (tests/act.py says how, offline), on the demo set with
its gold patches in the local sandbox: the plan, a matrix of shards, artifacts up and down, the
aggregate, its outputs and its summary, the comment.

These replace the home-made player's run of plan → shards → aggregate. The player keeps what act
does not do or enforce: "Re-run failed jobs" and the attempts it makes (test_workflows' rerun
play), `concurrency` (the groups and who claims them), `permissions` (the callers grant what the
reusable workflow asks), `max-parallel` given as an expression, `timeout-minutes` (the shard
job's is above the action's deadline) and the cache-save rule (test_composite_actions).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.act import ROOT, caller_repo, missing, play
from tests.conftest import need, rows

SETTINGS = ('dataset = "fixtures/instances.jsonl"\npredictions = "gold"\nsandbox = "local"\n'
            'repos_dir = "fixtures/repos"\n')
FAKE_SERVER = "http://127.0.0.1:9/v1"  # gold patches ask no model: no Ollama starts with a base URL


@pytest.fixture
def act_home(tmp_path: Path) -> Path:
    why = missing()
    if why:
        need("act and the pinned actions' trees", "CI_EVAL_REQUIRE_ACT", why)
    home = tmp_path / "home"
    home.mkdir()
    return home


def unzipped(artifacts: Path, name: str, member: str) -> str:
    with zipfile.ZipFile(artifacts / name / f"{name}.zip") as archive:
        return archive.read(member).decode()


@pytest.mark.parametrize("shards", ["2", ""])
def test_evaluate_runs_plan_shards_and_aggregate_under_act(tmp_path: Path, act_home: Path, shards: str) -> None:
    """With shards set, budget-minutes keeps its default: the plan step must pass --of alone
    (with both, ci-eval plan refuses and the first job fails, as it would on GitHub)."""
    repo = caller_repo(tmp_path / "app", (ROOT / ".github" / "workflows" / "evaluate.yml").read_text())
    inputs = {"shards": shards, "settings": SETTINGS, "base-url": FAKE_SERVER,
              "shard-retention-days": "3" if shards else "", "report-retention-days": "90" if shards else ""}
    run = play(repo, "workflow_dispatch", {"inputs": inputs}, act_home)
    assert run.returncode == 0, run.log[-4000:]
    matrix = json.loads(run.outputs("plan")["matrix"])
    count = len(matrix["include"])
    assert (count == 2) if shards else (count >= 1)
    for entry in matrix["include"]:
        assert run.job_ended(f"shard {entry['index']} of {count}") == "succeeded"
    assert run.job_ended("aggregate") == "succeeded"
    outputs = run.outputs("aggregate")
    assert outputs["verdict"] == "pass" and outputs["resolved"] == str(len(rows())) and outputs["rate"] == "1.0"
    names = sorted(p.name for p in run.artifacts.iterdir())
    assert names == sorted(["ci-eval-plan-attempt-1", "ci-eval-report",
                            *(f"ci-eval-shard-{i}-attempt-1" for i in range(count))])
    report = json.loads(unzipped(run.artifacts, "ci-eval-report", "report.json"))
    assert report["resolve_rate"]["resolved"] == len(rows()) and report["shards"]["of"] == count
    assert "6 of 6 resolved" in unzipped(run.artifacts, "ci-eval-report", "summary.md")
    expiry = {c["name"]: c.get("expires_at") for c in run.created}  # the retention each upload asked
    if shards:  # a private repository keeps reports longer than shards, without its own setting
        assert days_left(expiry["ci-eval-shard-0-attempt-1"]) == 3 and days_left(expiry["ci-eval-report"]) == 90
    else:
        assert expiry["ci-eval-report"] is None  # the repository's setting


def days_left(expires: str | None) -> int:
    assert expires is not None, "no retention was asked for"
    from datetime import UTC, datetime

    return round((datetime.fromisoformat(expires.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds() / 86400)


def readme_pull_request_example() -> str:
    """The README's pull-request workflow, its `with:` pointed at the demo set and no model."""
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
                 if "pull_request" in b)
    workflow = yaml.safe_load(block)
    given = workflow["jobs"]["eval"]["with"]
    given["settings"] = SETTINGS
    given["base-url"] = FAKE_SERVER
    return yaml.safe_dump(workflow, sort_keys=False).replace("'on':", "on:", 1).replace("true:", "on:", 1)


def test_the_readmes_pull_request_example_evaluates_a_labelled_pull_request_and_comments(
        tmp_path: Path, act_home: Path) -> None:
    repo = caller_repo(tmp_path / "app", readme_pull_request_example())
    payload = {"action": "labeled", "number": 7, "label": {"name": "eval"},
               "repository": {"full_name": "me/app", "default_branch": "main"},
               "pull_request": {"number": 7, "labels": [{"name": "eval"}],
                                "head": {"ref": "fix", "repo": {"full_name": "me/app"}}, "base": {"ref": "main"}}}
    run = play(repo, "pull_request", payload, act_home)
    assert run.returncode == 0, run.log[-4000:]
    assert run.job_ended("aggregate") == "succeeded" and run.job_ended("comment") == "succeeded"
    outputs = run.outputs("aggregate")
    # main has no run yet: no baseline, so no verdict to give (a warning, not a red check)
    assert outputs["verdict"] == "inconclusive" and outputs["verdict-cause"] == "lack_of_data"
    assert outputs["resolved"] == str(len(rows()))
    assert "runs?branch=main" in run.gh_calls  # the baseline history was looked for on the base branch
    posted = run.gh_calls.split("-X POST repos/me/app/issues/7/comments --input -\n", 1)[1]
    assert "6 of 6 resolved" in json.JSONDecoder().raw_decode(posted)[0]["body"]


AB_CALLER = """name: ab
on: workflow_dispatch
permissions: {}
jobs:
  ab:
    permissions:
      contents: read
      actions: read
    uses: org/ci-eval/.github/workflows/ab.yml@v2
    with:
      settings-a: |
        dataset = "fixtures/instances.jsonl"
        predictions = "fixtures/empty-patches.jsonl"
        sandbox = "local"
        repos_dir = "fixtures/repos"
      settings-b: |
        dataset = "fixtures/instances.jsonl"
        predictions = "gold"
        sandbox = "local"
        repos_dir = "fixtures/repos"
      shards: "1"
      base-url: http://127.0.0.1:9/v1
      fail-unless: better
"""


def test_two_evaluations_compared_paired_under_act(tmp_path: Path, act_home: Path) -> None:
    """ab.yml as a caller uses it: two evaluations of one sample at once (their artifacts apart
    by prefix), then the ab action's answer. A's patches are empty, B's the gold ones."""
    repo = caller_repo(tmp_path / "app", AB_CALLER)
    (repo / "fixtures" / "empty-patches.jsonl").write_text("".join(
        json.dumps({"instance_id": r["instance_id"], "model_name_or_path": "empty", "model_patch": ""}) + "\n"
        for r in rows()))
    run = play(repo, "workflow_dispatch", {"inputs": {}}, act_home)
    assert run.returncode == 0, run.log[-4000:]
    assert run.job_ended("is B better than A?") == "succeeded"
    assert run.outputs("is B better than A?")["answer"] == "better"
    names = {p.name for p in run.artifacts.iterdir()}
    assert {"ab-a-report", "ab-b-report", "ab-a-plan-attempt-1", "ab-b-plan-attempt-1"} <= names

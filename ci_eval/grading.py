"""Grade a patch as the official harness does: fresh sandbox, its apply chain, its parsers."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_eval.contracts.shard import Outcome, Tests
from ci_eval.contracts.status import STATUS_OF, ErrorInfo, ErrorKind, Status
from ci_eval.instances import Instance
from ci_eval.sandbox import SCRATCH, Backend, Sandbox
from ci_eval.sandbox.output import EVAL
from ci_eval.shard_folder import APPLY_LOG, PATCH, TEST_LOG

PATCH_PATH = f"{SCRATCH}/patch.diff"
EVAL_PATH = f"{SCRATCH}/eval.sh"
_SHORT = 60  # seconds for a git command


@dataclass
class Graded:
    status: Status
    tests: Tests = field(default_factory=Tests)
    error: ErrorInfo | None = None
    eval_seconds: float = 0.0


async def grade(instance: Instance, patch: str, backend: Backend, log_dir: Path, eval_timeout: float) -> Graded:
    """Apply `patch` in a fresh sandbox without network, run the eval script, grade the log."""
    if not patch.strip():
        return Graded(Status.EMPTY_PATCH)
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / PATCH).write_text(patch, encoding="utf-8")
    async with backend.create(instance, network=False) as sandbox:
        applied, apply_log = await apply_patch(sandbox, patch)
        (log_dir / APPLY_LOG).write_text(apply_log, encoding="utf-8")
        if not applied:
            return Graded(Status.PATCH_FAILED)
        spec = _test_spec(instance)
        nonce = secrets.token_hex(12)  # made after the patch was fixed: its text cannot hold it
        await sandbox.write_file(EVAL_PATH, marked(spec.eval_script, nonce))
        run = await sandbox.execute(f"/bin/bash {EVAL_PATH}", eval_timeout, EVAL)
        oom = await sandbox.memory_killed()  # read from outside the container
    log_path = log_dir / TEST_LOG
    if oom:
        # The same tests fit under the gold patch: a patch whose tests the memory limit kills is
        # wrong, as one whose tests hang is (and an OOM is no hiding place from a verdict).
        log_path.write_text(run.output, encoding="utf-8")
        message = "the memory limit killed a process of the test run under this patch (out of memory)"
        return Graded(STATUS_OF[ErrorKind.OOM], error=ErrorInfo(kind=ErrorKind.OOM, message=message),
                      eval_seconds=run.seconds)
    if run.timed_out:
        log_path.write_text(run.output + f"\n\nTimeout error: {eval_timeout:g} seconds exceeded.\n", encoding="utf-8")
        # The same tests finish under the gold patch: a patch that makes them hang is wrong.
        message = f"tests ran longer than --eval-timeout {eval_timeout:g}s under this patch"
        return Graded(STATUS_OF[ErrorKind.TIMEOUT], error=ErrorInfo(kind=ErrorKind.TIMEOUT, message=message),
                      eval_seconds=run.seconds)
    graded_log = sectioned(run.output, nonce, run.returncode)
    log_path.write_text(graded_log, encoding="utf-8")
    report = await asyncio.to_thread(_report, spec, instance, patch, log_path)
    return _graded(_contradicted(report, spec, graded_log), run.seconds)


# The eval script's test output is the patch's to write: its code runs inside the test process.
# What decides a verdict is therefore read where that code cannot reach: the section of the log
# between two lines the script's own shell prints around the test command, keyed by a nonce made
# after the patch was fixed (the patch's diff, which the script echoes, cannot hold it); the test
# command's exit status as the engine reports the exec's (the script exits with it); and every
# swebench marker inside the section or outside it neutralised, so that only ci-eval's own
# markers frame what swebench's parser reads. A test reported both failed and passed counts as
# failed. Code the patch leaves at interpreter exit can still print anything: gaming.py flags it.
#
# swebench's markers, as its constants spell them (a test checks them; swebench.harness takes a
# second to import, which the CLI's start-up does not pay).
START_TEST_OUTPUT, END_TEST_OUTPUT = ">>>>> Start Test Output", ">>>>> End Test Output"
TEST_EXIT_CODE = ">>>>> Test Exit Code"
MARKERS = (START_TEST_OUTPUT, END_TEST_OUTPUT, TEST_EXIT_CODE, ">>>>> Patch Apply Failed", ">>>>> Reset Failed",
           ">>>>> Tests Errored", ">>>>> Tests Timed Out")
_EXIT_VAR = "SWEBENCH_TEST_EXIT_CODE"


def marked(script: str, nonce: str) -> str:
    """The eval script with a nonce line before and after its test command, ending with the test
    command's exit status (swebench's script records it in a variable right after the command)."""
    lines = script.splitlines()
    out = []
    for line in lines:
        out.append(line)
        if line.strip() == f": '{START_TEST_OUTPUT}'":
            out.append(f"echo 'ci-eval-{nonce}-start'")
        elif line.strip() == f"{_EXIT_VAR}=$?":
            out.append(f"echo 'ci-eval-{nonce}-end'")
    out.append(f'exit "${{{_EXIT_VAR}:-1}}"')
    return "\n".join(out) + "\n"


def sectioned(output: str, nonce: str, exit_code: int) -> str:
    """The log swebench parses: ci-eval's own markers around the first start line and the last
    end line of this nonce, the exit status the engine saw, and nothing else that looks like a marker."""
    lines = output.splitlines()
    start = next((n for n, line in enumerate(lines) if line == f"ci-eval-{nonce}-start"), None)
    end = next((n for n in range(len(lines) - 1, -1, -1) if lines[n] == f"ci-eval-{nonce}-end"), None)
    if start is None or end is None or end < start:  # the tests never ran to their end: no section
        return _neutral("\n".join(lines))
    return "\n".join([_neutral("\n".join(lines[:start])), START_TEST_OUTPUT, _neutral("\n".join(lines[start + 1:end])),
                      END_TEST_OUTPUT, f"{TEST_EXIT_CODE}: {exit_code}", _neutral("\n".join(lines[end + 1:]))]) + "\n"


def _neutral(text: str) -> str:
    for marker in MARKERS:
        text = text.replace(marker, marker.replace(">>>>> ", ">>>>>_"))
    return text


def _contradicted(report: dict[str, Any], spec: Any, text: str) -> dict[str, Any]:
    """The report with every test that its section reports both failed and passed counted as
    failed (swebench's parser keeps the last status it reads, which a patch can print last)."""
    from swebench.harness.constants import TestStatus
    from swebench.harness.log_parsers import PARSER_REGISTRY

    status = report.get("tests_status")
    if not status or START_TEST_OUTPUT not in text:
        return report
    parse = PARSER_REGISTRY[spec.log_parser]
    bad, good = {TestStatus.FAILED.value, TestStatus.ERROR.value}, {TestStatus.PASSED.value, TestStatus.XFAIL.value}
    said: dict[str, set[str]] = {}
    for line in text.split(START_TEST_OUTPUT, 1)[1].split(END_TEST_OUTPUT, 1)[0].splitlines():
        for name, word in parse(line, spec).items():
            said.setdefault(name, set()).add(word)
    both = {name for name, words in said.items() if words & bad and words & good}
    if not both:
        return report
    moved = {kind: {"success": [t for t in tests["success"] if t not in both],
                    "failure": tests["failure"] + [t for t in tests["success"] if t in both]}
             for kind, tests in status.items()}
    resolved = report["resolved"] and not any(t in both for t in status.get("FAIL_TO_PASS", {}).get("success", [])
                                             + status.get("PASS_TO_PASS", {}).get("success", []))
    return {**report, "tests_status": moved, "resolved": resolved}


async def apply_patch(sandbox: Sandbox, patch: str) -> tuple[bool, str]:
    """The official chain: git apply, --3way, --reject, then patch --fuzz; a clean tree each try."""
    from swebench.harness.run_evaluation import GIT_APPLY_CMDS

    await sandbox.write_file(PATCH_PATH, patch)
    log = []
    for attempt, command in enumerate(GIT_APPLY_CMDS):
        if attempt:
            await sandbox.execute("git checkout -- . ; git clean -fdq", _SHORT)
        out = await sandbox.execute(f"{command} {PATCH_PATH}", _SHORT)
        log.append(f"$ {command}\n{out.output}")
        if out.returncode == 0:
            return True, "\n".join(log)
    # The chain can leave the patch fully applied while every command exited non-zero.
    check = await sandbox.execute(f"git apply --check --reverse {PATCH_PATH}", _SHORT)
    return check.returncode == 0, "\n".join(log)


def _test_spec(instance: Instance) -> Any:
    from swebench.harness.utils import make_test_spec

    return make_test_spec(instance.model_dump())


def _report(spec: Any, instance: Instance, patch: str, log_path: Path) -> dict[str, Any]:
    from swebench.harness.grading import get_eval_report

    prediction = {"instance_id": instance.instance_id, "model_patch": patch, "model_name_or_path": "ci-eval"}
    report: dict[str, Any] = get_eval_report(spec, prediction, str(log_path), include_tests_status=True)
    mine: dict[str, Any] = report[instance.instance_id]
    return mine


def _graded(report: dict[str, Any], seconds: float) -> Graded:
    if not report["patch_successfully_applied"]:
        # No parseable test output: unresolved, as the official harness grades it. swebench's
        # advisory infra_failure comes from words in the log, which the patch and its tests can
        # print (the eval script even shows the patch's diff): it never decides a status here.
        # What is infrastructure ci-eval sees itself: the engine, an OOM kill, its own clocks.
        return Graded(Status.UNRESOLVED, eval_seconds=seconds)
    status = report.get("tests_status", {})
    tests = Tests(
        FAIL_TO_PASS=Outcome.model_validate(status.get("FAIL_TO_PASS", {})),
        PASS_TO_PASS=Outcome.model_validate(status.get("PASS_TO_PASS", {})),
    )
    return Graded(Status.RESOLVED if report["resolved"] else Status.UNRESOLVED, tests=tests, eval_seconds=seconds)

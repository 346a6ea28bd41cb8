"""Grade a patch as the official harness does: fresh sandbox, its apply chain, its parsers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_eval.contracts import STATUS_OF, ErrorInfo, ErrorKind, Outcome, Status, Tests
from ci_eval.errors import InfraError
from ci_eval.instances import Instance
from ci_eval.layout import APPLY_LOG, PATCH, TEST_LOG
from ci_eval.sandbox import SCRATCH, Backend, Sandbox
from ci_eval.sandbox.output import EVAL

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
        await sandbox.write_file(EVAL_PATH, spec.eval_script)
        run = await sandbox.execute(f"/bin/bash {EVAL_PATH}", eval_timeout, EVAL)
        oom = await sandbox.memory_killed()
    log_path = log_dir / TEST_LOG
    if oom:
        log_path.write_text(run.output, encoding="utf-8")
        raise InfraError("the memory limit killed a process of the test run (out of memory); "
                         "raise --memory-limit", kind=ErrorKind.OOM, transient=False)
    if run.timed_out:
        log_path.write_text(run.output + f"\n\nTimeout error: {eval_timeout:g} seconds exceeded.\n", encoding="utf-8")
        # The same tests finish under the gold patch: a patch that makes them hang is wrong.
        message = f"tests ran longer than --eval-timeout {eval_timeout:g}s under this patch"
        return Graded(STATUS_OF[ErrorKind.TIMEOUT], error=ErrorInfo(kind=ErrorKind.TIMEOUT, message=message),
                      eval_seconds=run.seconds)
    log_path.write_text(run.output, encoding="utf-8")
    report = await asyncio.to_thread(_report, spec, instance, patch, log_path)
    return _graded(report, run.seconds)


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

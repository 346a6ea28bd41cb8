"""The adversary on the real Docker engine: floods, the memory limit, hanging patches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ci_eval.instances import Instance
from ci_eval.sandbox.docker import DockerBackend, connect
from ci_eval.sandbox.output import EVAL
from ci_eval.shard import run_shard
from tests.conftest import ours, rows, settings

pytestmark = pytest.mark.docker

CALC_1 = "ci-eval-fixtures__calc-1"


def with_eval_prefix(tmp_path: Path, shell: str) -> Path:
    """calc-1 with `shell` run just before its tests, inside the test-output markers."""
    row = dict(rows()[0])
    row["eval_script"] = row["eval_script"].replace("python3 -m pytest", f"{shell}\npython3 -m pytest", 1)
    path = tmp_path / "dataset.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path


def test_an_agent_command_that_floods_is_stopped_in_the_container(docker_client: Any) -> None:
    instance = Instance.model_validate(rows()[0])

    async def flood() -> Any:
        backend = DockerBackend(connect(), owner="test-flood", memory_limit="4g", pids_limit=1024)
        try:
            async with backend.create(instance, network=False) as sandbox:
                return await sandbox.execute("yes", timeout=60)
        finally:
            await backend.close()

    out = asyncio.run(flood())
    assert out.flooded and not out.timed_out and out.returncode == 141
    assert len(out.output) < 1_100_000 and out.output.startswith("y\ny\n")
    assert ours(docker_client, "test-flood") == []


def test_a_long_test_log_is_bounded_and_still_graded_from_its_tail(docker_client: Any, tmp_path: Path) -> None:
    dataset = with_eval_prefix(tmp_path, "head -c 100000000 /dev/zero | tr '\\0' x")  # 100 MB, one line
    result = run_shard(settings(tmp_path, dataset=str(dataset), predictions="gold", sandbox="docker"), 0, 1)
    assert result.records[(CALC_1, 0)].status == "resolved"
    log = result.folder / "logs" / CALC_1 / "epoch-0" / "test_output.txt"
    assert log.stat().st_size < EVAL.keep + 1000
    assert "bytes of output dropped here" in log.read_text()


def test_a_test_run_that_floods_is_stopped_and_judged(docker_client: Any, tmp_path: Path) -> None:
    dataset = with_eval_prefix(tmp_path, "yes")  # would print until --eval-timeout
    cfg = settings(tmp_path, dataset=str(dataset), predictions="gold", sandbox="docker", eval_timeout=600)
    record = run_shard(cfg, 0, 1).records[(CALC_1, 0)]
    assert record.status == "unresolved" and record.timings.eval < 300
    log = tmp_path / "out" / "logs" / CALC_1 / "epoch-0" / "test_output.txt"
    assert log.stat().st_size < EVAL.keep + 1000 and "stopped after printing" in log.read_text()


def test_a_test_runner_killed_by_the_memory_limit_is_a_model_failure_that_says_so(docker_client: Any,
                                                                                   tmp_path: Path) -> None:
    # The test runner itself grows past the limit and the kernel kills it: as a hang is, that is
    # the patch's failure (no hiding place from a verdict), and the record says why (kind oom).
    hog = "python3 -c 'import sys; hog = b\"x\" * (512 * 1024 * 1024); sys.exit(0)' &&"
    dataset = with_eval_prefix(tmp_path, hog).read_text().replace(f"{hog}\\npython3", f"{hog} python3")
    (tmp_path / "dataset.jsonl").write_text(dataset)
    cfg = settings(tmp_path, dataset=str(tmp_path / "dataset.jsonl"), predictions="gold", sandbox="docker",
                   memory_limit="128m", max_attempts=1)
    record = run_shard(cfg, 0, 1).records[(CALC_1, 0)]
    assert record.status == "unresolved" and record.error is not None and record.error.kind == "oom", record
    assert ours(docker_client, tmp_path / "out") == []


def in_container(*commands: tuple[str, float], pids_limit: int = 1024) -> list[Any]:
    """Run `commands` (text, timeout) one after another in one calc-1 container, as an agent would."""
    instance = Instance.model_validate(rows()[0])

    async def run() -> list[Any]:
        backend = DockerBackend(connect(), owner="test-bounds", memory_limit="1g", pids_limit=pids_limit)
        try:
            async with backend.create(instance, network=False) as sandbox:
                return [await sandbox.execute(text, timeout=timeout) for text, timeout in commands]
        finally:
            await backend.close()

    return asyncio.run(run())


# The agent, root in its container, swaps the bounds the command line runs under for ones that bound nothing.
UNBOUND = ("for dir in /usr/local/bin /usr/bin /bin; do "
           "printf '#!/bin/bash\\nwhile [ \"${1#-}\" != \"$1\" ] || [[ \"$1\" =~ ^[0-9.]+$ ]]; do shift; done\\n"
           "exec \"$@\"\\n' > $dir/timeout; printf '#!/bin/bash\\nexec cat\\n' > $dir/head; "
           "chmod +x $dir/timeout $dir/head; done; echo swapped")


def test_the_bounds_hold_when_the_agent_replaces_timeout_and_head(docker_client: Any) -> None:
    swapped, slow, flood, after = in_container((UNBOUND, 30), ("sleep 100", 5), ("yes", 30), ("echo alive", 30))
    assert swapped.output.strip().endswith("swapped"), swapped.output
    # cut from outside at its timeout, the grace and the outside grace: the command's time, not the engine's
    assert slow.timed_out and slow.returncode == 124 and slow.seconds < 40
    assert flood.flooded and len(flood.output) < 1_100_000
    assert after.returncode == 0 and after.output.strip() == "alive"  # the container lives on
    assert ours(docker_client, "test-bounds") == []


def test_a_fork_bomb_does_not_outlive_its_command(docker_client: Any) -> None:
    _, after, count = in_container(("timeout -s KILL 5 bash -c ':(){ :|:& };:'", 20), ("echo alive", 30),
                                      ("ls /proc | grep -c '^[0-9]'", 30), pids_limit=256)
    assert after.returncode == 0 and after.output.strip() == "alive", after.output
    assert int(count.output.split()[-1]) < 10  # what the bomb forked is gone

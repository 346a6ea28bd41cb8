"""Kill or interrupt a real shard half-way; running it again finishes with nothing done twice."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import INSTANCES, ours, rows

pytestmark = pytest.mark.docker


def shard_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "ci_eval", "shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES),
            "--predictions", "gold", "--sandbox", "docker", "--workers", "2", "--output", str(out)]


def lines(out: Path) -> list[str]:
    path = out / "results.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def start_and_wait_for(out: Path, finished: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(shard_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(lines(out)) < finished:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the shard made no progress"
        time.sleep(0.05)
    return proc


def ids_in(out: Path) -> list[str]:
    import json

    return [json.loads(line)["instance_id"] for line in lines(out)]


def test_sigkill_half_way_then_resume(docker_client: Any, tmp_path: Path) -> None:
    out = tmp_path / "shard"
    proc = start_and_wait_for(out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= len(lines(out)) < len(rows())
    again = subprocess.run(shard_cmd(out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    counts = collections.Counter(ids_in(out))
    assert counts == {row["instance_id"]: 1 for row in rows()}
    assert ours(docker_client, out) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_and_resumes(docker_client: Any, tmp_path: Path, signum: int, code: int) -> None:
    out = tmp_path / "shard"
    proc = start_and_wait_for(out, 1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err.decode()
    assert b"resume" in err
    assert ours(docker_client, out) == []  # the running instances' containers went with it
    done_before = len(lines(out))
    again = subprocess.run(shard_cmd(out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{len(rows()) - done_before} to run" in again.stderr
    assert collections.Counter(ids_in(out)) == {row["instance_id"]: 1 for row in rows()}
    os.sync()

"""Bounded command output and a minimal environment, in the local sandbox (Docker's are in
test_hardening_docker.py)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from ci_eval.sandbox.local import LocalSandbox
from ci_eval.sandbox.output import EVAL, Capture, OutputCap


def box(tmp_path: Path) -> LocalSandbox:
    (tmp_path / "testbed").mkdir(exist_ok=True)
    return LocalSandbox(tmp_path)


def test_capture_keeps_head_and_tail_and_counts_the_rest() -> None:
    capture = Capture(OutputCap(keep=400, flood=10_000))
    for n in range(1000):
        capture.feed(f"{n:04d}\n".encode())
        assert len(capture.head) + capture.tail_size <= 400 + 5  # never more than one chunk over
    out = capture.result(0, False, 1.0)
    assert out.output.startswith("0000\n0001\n") and out.output.endswith("0998\n0999\n")
    assert out.dropped == 5000 - 400 and f"{out.dropped} bytes of output dropped" in out.output
    assert not out.flooded


def test_a_flooding_command_is_stopped_and_costs_little_memory(tmp_path: Path) -> None:
    out = asyncio.run(box(tmp_path).execute("yes", timeout=60))
    assert out.flooded and not out.timed_out and out.returncode == -signal.SIGKILL  # long before the timeout
    assert len(out.output) < 1_100_000 and "stopped after printing" in out.output
    assert out.output.startswith("y\ny\n")


def test_the_test_log_keeps_its_tail_past_the_cap(tmp_path: Path) -> None:
    out = asyncio.run(box(tmp_path).execute("echo START; head -c 20000000 /dev/zero | tr '\\0' x; echo; echo SUMMARY",
                                            timeout=60, cap=EVAL))
    assert not out.flooded and out.dropped > 10_000_000
    assert out.output.startswith("START\n") and out.output.rstrip().endswith("SUMMARY")
    assert len(out.output) < EVAL.keep + 200


def test_commands_get_a_minimal_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_EVAL_API_KEY", "sk-canary-0001")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs-canary-0002")
    out = asyncio.run(box(tmp_path).execute("env; cat /proc/self/environ", timeout=30))
    assert "canary" not in out.output
    assert "PATH=" in out.output and "HOME=" in out.output

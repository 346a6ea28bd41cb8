"""Model time: requests a prompt cache can reuse, verdicts that do not depend on the runner's
speed, and a shard that ends by its deadline with nothing lost (a real OpenAI-speaking server
with scripted replies; the local sandbox)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ci_eval.report.aggregate import aggregate
from ci_eval.shard import run_shard
from tests.conftest import FIXTURES, INSTANCES, rows, settings
from tests.openai_server import FIX, SUBMIT_REPLY, replies, serve
from tests.test_agent import CALC_2, agent_settings
from tests.test_cli import run

READ = "Let me read more of the code.\n```bash\nseq 100000 101000\n```"  # ~7 KB of output
LOOK = "Let me look.\n```bash\nls calc\n```"


def exploration(tmp_path: Path, **overrides: Any) -> tuple[Any, Any]:
    """The scenario of a new user's long run: 24 reads of ~7 KB, then the fix and the submission."""
    cfg = agent_settings(tmp_path, "http://unused", **overrides)
    with serve(replies(*[READ] * 24, FIX), context_window=cfg.context_window) as server:
        result = run_shard(cfg.model_copy(update={"base_url": server.url}), 0, 1)
    return result.records[(CALC_2, 0)], server


@pytest.mark.parametrize(("window", "share"), [(None, 0.8), (8192, 0.6)])
def test_a_long_exploration_repeats_the_previous_request(tmp_path: Path, window: int | None, share: float) -> None:
    overrides = {"context_window": window} if window else {}
    record, server = exploration(tmp_path, **overrides)
    assert record.status == "resolved" and record.agent.steps == 26 and not server.violations
    assert record.agent.repeated_chars / record.agent.sent_chars >= share
    # the server's own prefix cache agrees: it reused most of what it was sent
    assert record.agent.cached_tokens == sum(server.cached) and record.agent.cached_tokens is not None
    assert record.agent.cached_tokens >= (share - 0.1) * record.agent.prompt_tokens
    report = aggregate([tmp_path / "out"], tmp_path / "report").report
    assert report.usage.repeated_prefix_share is not None and report.usage.repeated_prefix_share >= share
    assert report.usage.cached_share == pytest.approx(record.agent.cached_tokens / record.agent.prompt_tokens, abs=1e-3)
    assert "took from its cache" in (tmp_path / "report" / "summary.md").read_text()


@pytest.mark.parametrize("shape", ["llama.cpp", None])
def test_cached_tokens_as_llama_cpp_says_them_or_not_at_all(tmp_path: Path, shape: str | None) -> None:
    with serve(replies(LOOK, LOOK, FIX), cache_report=shape) as server:
        record = run_shard(agent_settings(tmp_path, server.url), 0, 1).records[(CALC_2, 0)]
    if shape is None:  # Ollama says nothing: nothing is made up
        assert record.agent.cached_tokens is None
        assert aggregate([tmp_path / "out"], tmp_path / "r").report.usage.cached_share is None
    else:
        assert record.agent.cached_tokens == sum(server.cached) > 0


def test_an_attempt_cut_by_the_clock_is_neither_a_pass_nor_a_regression(tmp_path: Path) -> None:
    """Every attempt cut by a tiny --agent-timeout, against a gold baseline under
    --max-new-failures 0: too slow, no verdict, so inconclusive (exit 3), not a regression."""
    base = settings(tmp_path, predictions="gold", sandbox="local", repos_dir=FIXTURES / "repos",
                    instance_ids=[CALC_2, "ci-eval-fixtures__calc-1"], output=tmp_path / "base")
    run_shard(base, 0, 1)
    aggregate([tmp_path / "base"], tmp_path / "base-report")

    def slowly(_: list[dict[str, str]]) -> str:
        time.sleep(0.4)
        return LOOK

    with serve(slowly) as server:
        cfg = agent_settings(tmp_path, server.url, agent_timeout=1, instance_ids=[CALC_2, "ci-eval-fixtures__calc-1"])
        result = run_shard(cfg, 0, 1)
    assert {r.status for r in result.records.values()} == {"too_slow"}
    assert all(r.agent.exit_reason == "time_limit" and r.agent.steps < 40 for r in result.records.values())
    done = run("aggregate", str(tmp_path / "out"), "--output", str(tmp_path / "new-report"), "--baseline",
               str(tmp_path / "base-report" / "report.json"), "--max-new-failures", "0")
    assert done.returncode == 3, done.stdout + done.stderr
    report = json.loads((tmp_path / "new-report" / "report.json").read_text())
    assert report["totals"]["by_status"] == {"too_slow": 2}
    assert sorted(report["no_verdict"]) == sorted(report["instances"])
    summary = (tmp_path / "new-report" / "summary.md").read_text()
    assert "2 of 2 attempts were too slow" in summary and "Too slow (no verdict)" in summary
    junit = (tmp_path / "new-report" / "junit.xml").read_text()
    assert junit.count('type="too_slow"') == 2 and "too slow:" in junit


def test_a_shard_past_its_deadline_keeps_what_finished_and_resumes_the_rest(tmp_path: Path) -> None:
    """One instance's model hangs past --deadline-minutes: what finished before the deadline is
    kept, the hung one and any the deadline stopped are recorded as not attempted, the shard exits
    1; the next run does only those. How many of the others finish in 18 s is the machine's speed:
    the test holds for any number of them."""
    stuck = next(r for r in rows() if r["instance_id"] == CALC_2)["problem_statement"]
    release = threading.Event()

    def script(messages: list[dict[str, str]]) -> str:
        if stuck in messages[1]["content"]:
            release.wait(120)  # the model server hangs on this one instance
        return SUBMIT_REPLY

    out = tmp_path / "out"
    with serve(script) as server:
        cmd = [sys.executable, "-m", "ci_eval", "shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES),
               "--sandbox", "local", "--repos-dir", str(FIXTURES / "repos"), "--output", str(out),
               "--base-url", server.url, "--model", "scripted", "--workers", "2",
               "--deadline-minutes", "0.3"]
        began = time.monotonic()
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        took = time.monotonic() - began
        release.set()  # the server answers again: the re-run (same server, same identity) resumes
        lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    by_id = {line["instance_id"]: line for line in lines}
    stopped = sorted(iid for iid, line in by_id.items() if line["status"] == "not_attempted")
    assert len(lines) == 6 and CALC_2 in stopped
    assert all(by_id[iid]["error"]["kind"] == "deadline" for iid in stopped)
    assert all(line["status"] == "empty_patch" for iid, line in by_id.items() if iid not in stopped)
    assert first.returncode == 1, first.stderr
    assert f"{len(stopped)} instance(s) not done: --deadline-minutes passed" in first.stderr, first.stderr
    assert took < 100  # it stopped at the deadline, not at the hung request's end (120 s)

    assert again.returncode == 0, again.stderr
    assert f"6 instances, {len(stopped)} to run" in again.stderr
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    resumed = lines[6:]
    assert sorted(line["instance_id"] for line in resumed) == stopped
    # a deadline uses up no attempt
    assert all(line["status"] == "empty_patch" and line["attempt"] == 1 for line in resumed)


def a_server_that_dies(server: Any, after: int, for_seconds: float) -> Any:
    """A script that takes the server down at its `after`-th request, for `for_seconds`."""
    seen = []

    def script(_: list[dict[str, str]]) -> int | str:
        seen.append(1)
        if len(seen) == after:
            server.down = True
            threading.Timer(for_seconds, lambda: setattr(server, "down", False)).start()
            return 503
        return SUBMIT_REPLY

    return script


def test_a_model_server_that_goes_down_pauses_the_shard_until_it_is_back(tmp_path: Path) -> None:
    """Down for 12 s at the second instance: that attempt is lost (the client's four retries,
    about 7.5 s of backoff, are spent), no other instance starts while the server is probed, and
    once it is back the lost one is tried again; nothing ends as an error."""
    with serve(replies()) as server:
        server.script = a_server_that_dies(server, after=2, for_seconds=12)
        cfg = agent_settings(tmp_path, server.url, workers=1, instance_ids=[])
        result = run_shard(cfg.model_copy(update={"instance_ids": [r["instance_id"] for r in rows()[:4]]}), 0, 1)
    assert {r.status for r in result.records.values()} == {"empty_patch"}, result.records
    lines = [json.loads(line) for line in (result.folder / "results.jsonl").read_text().splitlines()]
    assert [line["status"] for line in lines].count("error") == 1 and len(lines) == 5
    lost = next(line for line in lines if line["status"] == "error")
    assert lost["error"]["kind"] == "model"
    again = [line for line in lines if line["instance_id"] == lost["instance_id"]][-1]
    assert again["status"] == "empty_patch" and again["attempt"] == 2


def test_a_model_server_that_stays_down_ends_the_shard_with_the_rest_resumable(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with serve(replies()) as server:
        server.script = a_server_that_dies(server, after=2, for_seconds=600)
        cmd = [sys.executable, "-m", "ci_eval", "shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES),
               "--sandbox", "local", "--repos-dir", str(FIXTURES / "repos"), "--output", str(out),
               "--base-url", server.url, "--model", "scripted", "--workers", "1", "--model-down-minutes", "0.1"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        server.down = False
    assert done.returncode == 1, done.stderr
    assert "not done: the model server stayed down past --model-down-minutes 0.1" in done.stderr
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["status"] for line in lines] == ["empty_patch", "error"]  # then nothing more started

"""Any agent judged as ci-eval's own is: the command seam (a shell command per attempt, the
sandbox through CI_EVAL_EXEC, the model through a counted endpoint) and the Python seam (a
factory the settings name), against the scripted OpenAI server, in the local sandbox and in
Docker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ci_eval.report.aggregate import aggregate
from ci_eval.shard import run_shard
from tests.conftest import need, rows, settings
from tests.openai_server import FIX, SUBMIT_REPLY, Script, replies, serve, tokens
from tests.test_agent import CALC_2, LOOK, agent_settings, trajectory

ROOT = Path(__file__).resolve().parent.parent
BASH_AGENT = f"bash {ROOT / 'examples' / 'agents' / 'bash_agent.sh'}"
SECRET, TOKEN = "sk-the-real-key-0123456789", "ghs_the-github-token-0123456789"


def test_a_bash_agent_resolves_through_the_command_seam_counted_as_the_server_counted(tmp_path: Path) -> None:
    with serve(replies(LOOK, FIX)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, agent_command=BASH_AGENT), 0, 1)
    record = result.records[(CALC_2, 0)]
    assert record.status == "resolved", record
    assert "return hi" in record.patch and record.agent.exit_reason == "submitted"
    calls = [r for r in server.requests if "messages" in r]
    assert record.agent.steps == len(calls) == 3
    assert record.agent.prompt_tokens == sum(tokens(r["messages"]) for r in calls)
    run = trajectory(result.folder)
    assert [s["command"].split()[0] for s in run["steps"]] == ["cat", "python3", "echo"]
    assert run["agent_returncode"] == 0 and run["usage"]["calls"] == 3
    assert [m["role"] for m in run["messages"]] == ["system", "user", "assistant", "user", "assistant", "user",
                                                    "assistant"]
    assert "def clamp" in run["messages"][3]["content"]  # what CI_EVAL_EXEC printed, the agent passed on


def test_a_call_past_the_token_budget_is_refused_and_the_attempt_ends_token_budget(tmp_path: Path) -> None:
    with serve(replies(LOOK, LOOK, LOOK, FIX)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, agent_command=BASH_AGENT, token_budget=400), 0, 1)
    record = result.records[(CALC_2, 0)]
    assert record.agent.exit_reason == "token_budget" and record.status == "empty_patch"
    calls = [r for r in server.requests if "messages" in r]
    assert record.agent.steps == len(calls) < 4  # the refused call never reached the server
    assert record.agent.prompt_tokens + record.agent.completion_tokens >= 400
    stderr = (result.folder / "logs" / CALC_2 / "epoch-0" / "agent.stderr").read_text()
    assert "400" in stderr  # curl saw the refusal


def test_an_agent_past_its_time_is_ended_with_its_whole_group(tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    command = f"(sleep 30; touch {marker}) & sleep 30"
    with serve(replies()) as server:
        result = run_shard(agent_settings(tmp_path, server.url, agent_command=command, agent_timeout=2), 0, 1)
    record = result.records[(CALC_2, 0)]
    assert record.agent.exit_reason == "time_limit" and record.status == "too_slow"
    assert record.timings.agent < 15
    assert not marker.exists()


def test_a_failing_agent_command_ends_agent_failed_with_its_output_kept(tmp_path: Path) -> None:
    with serve(replies()) as server:
        result = run_shard(agent_settings(tmp_path, server.url, agent_command="echo out; echo err >&2; exit 3"), 0, 1)
    record = result.records[(CALC_2, 0)]
    assert record.agent.exit_reason == "agent_failed" and record.status == "empty_patch"
    logs = result.folder / "logs" / CALC_2 / "epoch-0"
    assert (logs / "agent.stdout").read_text() == "out\n" and (logs / "agent.stderr").read_text() == "err\n"
    assert trajectory(result.folder)["agent_returncode"] == 3


# Reads its own environment and every ancestor's /proc/PID/environ it can reach, then submits.
SNOOP = r"""
import os, sys
seen, pid, found = [], os.getpid(), []
while pid > 0:
    try:
        environ = open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        break
    seen.append(pid)
    found += [s for s in ("SECRET", "TOKEN") if s.encode() in environ]
    status = open(f"/proc/{pid}/status").read()
    pid = int(status.split("PPid:")[1].split()[0])
print("read", len(seen), "environ(s); found", found, "task", os.environ.get("CI_EVAL_TASK", "")[:1])
sys.exit(0)
""".replace("SECRET", SECRET).replace("TOKEN", TOKEN)


def test_no_ancestor_of_the_agent_holds_the_real_key_or_githubs_token(tmp_path: Path) -> None:
    """ci-eval runs as a child with the key and a token in its environment, as in CI; the agent
    walks /proc up from itself and finds neither (control: the same walk from a plain child of a
    process holding them finds both)."""
    snoop = tmp_path / "snoop.py"
    snoop.write_text(SNOOP)
    control = subprocess.run([sys.executable, str(snoop)], env={**os.environ, "CI_EVAL_API_KEY": SECRET,
                                                                "GITHUB_TOKEN": TOKEN},
                             capture_output=True, text=True, check=True)
    assert f"found ['{SECRET}', '{TOKEN}']" in control.stdout
    with serve(replies()) as server:
        out = tmp_path / "out"
        env = {**os.environ, "CI_EVAL_API_KEY": SECRET, "GITHUB_TOKEN": TOKEN}
        env.pop("GITHUB_ACTIONS", None)
        done = subprocess.run(
            [sys.executable, "-m", "ci_eval", "shard", "--index", "0", "--of", "1", "--dataset",
             str(ROOT / "tests" / "fixtures" / "instances.jsonl"), "--instance-ids", CALC_2, "--sandbox", "local",
             "--repos-dir", str(ROOT / "tests" / "fixtures" / "repos"), "--base-url", server.url, "--model", "scripted",
             "--agent-command", f"{sys.executable} {snoop}", "--output", str(out)],
            env=env, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    said = (out / "logs" / CALC_2 / "epoch-0" / "agent.stdout").read_text()
    assert "found [] task /" in said, said
    assert int(said.split("read ")[1].split()[0]) >= 2  # itself and an ancestor: the walk went up
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def test_an_unknown_agent_factory_is_one_line(tmp_path: Path) -> None:
    from ci_eval.errors import InputError

    with serve(replies()) as server, pytest.raises(InputError, match="cannot import the agent's module"):
        run_shard(agent_settings(tmp_path, server.url, agent="no_such_module:make"), 0, 1)


@pytest.mark.parametrize("sandbox", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_python_agent_from_a_factory_runs_on_the_seam(sandbox: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        request: pytest.FixtureRequest) -> None:
    """An agent of a dozen lines, written as a user would, in a module of its own."""
    if sandbox == "docker":
        request.getfixturevalue("docker_client")
    (tmp_path / "my_agent.py").write_text('''
from ci_eval.attempt import Attempt, Options
from ci_eval.contracts.status import ExitReason

def make(options: Options):
    async def agent(attempt: Attempt) -> ExitReason:
        source = await attempt.read_file("calc/ranges.py")
        reply = await attempt.complete([{"role": "user", "content": attempt.task.problem_statement}])
        attempt.say({"role": "assistant", "content": reply.content})
        fixed = source.replace("    if x > hi:\\n        return lo", "    if x > hi:\\n        return hi")
        await attempt.write_file("calc/ranges.py", fixed)
        out, _ = await attempt.execute("git diff --stat")
        return ExitReason.SUBMITTED if out.returncode == 0 else ExitReason.AGENT_FAILED
    return agent
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    with serve(replies(SUBMIT_REPLY)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, agent="my_agent:make", sandbox=sandbox), 0, 1)
    record = result.records[(CALC_2, 0)]
    assert record.status == "resolved", record
    assert record.agent.steps == 1 and record.agent.prompt_tokens > 0
    assert [s["command"] for s in trajectory(result.folder)["steps"]] == ["git diff --stat"]


@pytest.mark.docker
def test_a_bash_agent_resolves_through_the_command_seam_in_docker(docker_client: Any, tmp_path: Path) -> None:
    with serve(replies(LOOK, FIX)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, agent_command=BASH_AGENT, sandbox="docker"), 0, 1)
    record = result.records[(CALC_2, 0)]
    assert record.status == "resolved" and record.agent.steps == 3, record
    assert "def clamp" in trajectory(result.folder)["steps"][0]["output"]


MINI = Path(os.environ.get("CI_EVAL_MINI_SWE_AGENT",
                           Path.home() / ".cache" / "ci-eval" / "agents" / "mini-swe-agent" / "bin" / "python"))
MINI_ADAPTER = ROOT / "examples" / "agents" / "mini_swe_agent.py"


def gold_or_a_look(gold: Callable[[list[dict[str, str]], dict[str, Any]], bool]) -> Script:
    """The same scripted commands for any agent, in the block its prompt asks for: the gold patch
    where `gold(messages, row)` says, else a look at the files; then the submission."""

    def reply(messages: list[dict[str, str]]) -> str:
        block = "mswea_bash_command" if "mswea_bash_command" in messages[0]["content"] else "bash"
        opening = "\n".join(m["content"] for m in messages[:2])
        row = next(r for r in rows() if r["problem_statement"] in opening)
        if any(m["role"] == "assistant" for m in messages):
            command = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
        elif gold(messages, row):
            command = f"git apply <<'CI_EVAL_EOF'\n{row['patch']}CI_EVAL_EOF"
        else:
            command = "ls"
        return f"THOUGHT: the next step.\n\n```{block}\n{command}\n```"

    return reply


def every_other(messages: list[dict[str, str]], row: dict[str, Any]) -> bool:
    """Every other demo instance, by id: both verdicts occur."""
    return sorted(r["instance_id"] for r in rows()).index(row["instance_id"]) % 2 == 0


@pytest.mark.parametrize("sandbox", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_mini_swe_agent_gets_the_verdicts_ci_evals_own_agent_gets(sandbox: str, tmp_path: Path,
                                                                   request: pytest.FixtureRequest) -> None:
    """mini-swe-agent 2.x, no line of it changed, through the command seam on the demo set: the
    same verdicts as ci-eval's own agent given the same commands, its calls and tokens as the
    server counted them."""
    if not MINI.exists():
        need("mini-swe-agent", "CI_EVAL_REQUIRE_AGENTS", f"no Python with it at {MINI} (.ci/run makes one)")
    if sandbox == "docker":
        request.getfixturevalue("docker_client")
    base = {"model": "scripted", "sandbox": sandbox, "repos_dir": ROOT / "tests" / "fixtures" / "repos",
            "eval_timeout": 300}
    with serve(gold_or_a_look(every_other)) as server:
        ours = run_shard(settings(tmp_path / "ours", base_url=server.url, **base), 0, 1)
        before = len(server.requests)
        mini = run_shard(settings(tmp_path / "mini", base_url=server.url, **base,
                                  agent_command=f"{MINI} {MINI_ADAPTER}"), 0, 1)
        calls = [r for r in server.requests[before:] if "messages" in r]
    verdicts = {iid: r.status for (iid, _), r in mini.records.items()}
    assert verdicts == {iid: r.status for (iid, _), r in ours.records.items()}
    ids = sorted(r["instance_id"] for r in rows())
    assert {iid for iid, status in verdicts.items() if status == "resolved"} == set(ids[::2])
    assert all(r.agent.exit_reason == "submitted" for r in mini.records.values())
    assert sum(r.agent.steps for r in mini.records.values()) == len(calls) == 2 * len(ids)
    assert sum(r.agent.prompt_tokens for r in mini.records.values()) == sum(tokens(c["messages"]) for c in calls)
    assert all("mswea_bash_command" in c["messages"][0]["content"] for c in calls)  # mini's own prompts
    report = aggregate([tmp_path / "mini" / "out"], tmp_path / "mini-report").report
    assert report.usage.prompt_tokens == sum(tokens(c["messages"]) for c in calls)
    assert report.identity["agent"] == f"{MINI} {MINI_ADAPTER}"

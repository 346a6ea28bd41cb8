"""The agent against a real HTTP server speaking the OpenAI chat API, with scripted replies."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ci_eval.agent import ELIDED, Context, TokenCounter, bash_agent, compact, repeated_prefix
from ci_eval.agent_config import PACKAGED
from ci_eval.attempt import Options, cut_middle, solver
from ci_eval.cli import main
from ci_eval.contracts.shard import ModelCall
from ci_eval.model import Usage
from ci_eval.pool import Clocks, Pool
from ci_eval.progress import PlainLog, heartbeat
from ci_eval.sandbox.local import LocalBackend
from ci_eval.shard import run_shard
from ci_eval.shard_folder import ResultStore
from ci_eval.solver import Job
from tests.conftest import FIXTURES, INSTANCES, ours, resolved, settings
from tests.openai_server import FIX, SUBMIT_REPLY, replies, serve, shared_tokens, tokens
from tests.scripted import ScriptedModel, attempt, dense, fixture, limits
from tests.test_cli import run

CALC_2 = "ci-eval-fixtures__calc-2"
LOOK = "First I read the code.\n```bash\ncat calc/ranges.py\n```"
CHECK = "Check it.\n```bash\npython3 -c 'from calc.ranges import clamp; print(clamp(15, 0, 10))'\n```"


def agent_settings(tmp_path: Path, url: str, **overrides: Any) -> Any:
    base = {"base_url": url, "model": "scripted", "instance_ids": [CALC_2], "sandbox": "local",
            "repos_dir": FIXTURES / "repos", "eval_timeout": 120}
    return settings(tmp_path, **{**base, **overrides})


def trajectory(folder: Path, iid: str = CALC_2, epoch: int = 0) -> dict[str, Any]:
    return json.loads((folder / "logs" / iid / f"epoch-{epoch}" / "trajectory.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.docker
def test_scripted_replies_solve_a_fixture_in_docker(docker_client: Any, tmp_path: Path) -> None:
    with serve(replies(LOOK, FIX, CHECK)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, sandbox="docker"), 0, 1)
    record = result.records[(CALC_2, 0)]
    assert record.status == "resolved", record
    assert record.agent.exit_reason == "submitted" and record.agent.steps == 4
    assert record.agent.prompt_tokens > 0 and record.agent.completion_tokens > 0 and record.agent.model_seconds > 0
    assert "return hi" in record.patch
    steps = trajectory(result.folder)["steps"]
    assert [s["command"].split()[0] for s in steps] == ["cat", "python3", "python3", "echo"]
    assert "def clamp" in steps[0]["output"] and steps[2]["output"].strip() == "10"
    assert not server.violations
    assert ours(docker_client, result.folder) == []


def test_garbage_replies_end_in_format_errors(tmp_path: Path) -> None:
    two = "```bash\nls\n```\nand\n```bash\npwd\n```"
    model = ScriptedModel(replies("I think the bug is in clamp.", two, "no block", then="still none"))
    done = attempt(CALC_2, model, tmp_path)
    assert (done.patch, done.stats.exit_reason, done.stats.format_errors) == ("", "format_errors", 3)
    messages = json.loads((tmp_path / "trajectory.json").read_text())["messages"]
    assert "it contained 0" in messages[3]["content"] and "it contained 2" in messages[5]["content"]
    assert len(model.requests) == 3 and done.steps == []  # three replies without one command: none ran


def test_429_and_500_are_retried_then_succeed(tmp_path: Path) -> None:
    with serve(replies(429, 500, LOOK, FIX)) as server:
        result = run_shard(agent_settings(tmp_path, server.url), 0, 1)
    # the server's description (not Ollama's /api/version, not llama.cpp's /props: its model list),
    # the models check, then the two failures
    assert server.statuses[:6] == [404, 404, 200, 200, 429, 500]
    assert result.records[(CALC_2, 0)].status == "resolved"


def test_server_failing_for_good_is_an_infra_error(tmp_path: Path) -> None:
    with serve(replies(then=503)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, max_attempts=1), 0, 1)
    record = result.records[(CALC_2, 0)]
    assert record.status == "error" and record.error is not None and record.error.kind == "model"
    assert server.statuses.count(503) == 5  # the first try and four retries, no more


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once closed


def test_server_gone_mid_run_is_an_infra_error(tmp_path: Path) -> None:
    """No preflight here: the server is already gone when the agent makes its first call."""
    import asyncio

    from ci_eval.dataset import load_instances
    from ci_eval.instances import select
    from ci_eval.pool import Clocks, Pool
    from ci_eval.sandbox.local import LocalBackend
    from ci_eval.shard import model_for, solver_for
    from ci_eval.solver import Job

    cfg = resolved(agent_settings(tmp_path, f"http://127.0.0.1:{closed_port()}/v1"))
    instance = select(load_instances(str(INSTANCES)), [CALC_2])[0]

    async def attempt() -> Any:
        model = model_for(cfg, retries=1)
        try:
            pool = Pool(LocalBackend(FIXTURES / "repos"), solver_for(cfg, PACKAGED, [instance], model, ""),
                        ResultStore(tmp_path), tmp_path, Clocks(60, 60), PlainLog(0, 0))
            return await pool.attempt(Job(instance))
        finally:
            await model.close()

    record = asyncio.run(attempt())
    assert record.status == "error" and record.error is not None and record.error.kind == "model"
    assert "Connection error" in record.error.message
    assert (tmp_path / "logs" / CALC_2 / "epoch-0" / "trajectory.json").exists()  # what little happened is saved


def test_dead_server_is_one_line_before_any_work(tmp_path: Path) -> None:
    port = closed_port()
    result = run("shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--sandbox", "local",
                 "--base-url", f"http://127.0.0.1:{port}/v1", "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("ci-eval: error: cannot reach the model server") and "--base-url" in lines[-1]
    assert not (tmp_path / "o" / "results.jsonl").read_text()


def test_requests_never_exceed_the_context_window(tmp_path: Path) -> None:
    noisy = "Look at everything.\n```bash\nseq 1 30000\n```"
    model = ScriptedModel(replies(*[noisy] * 8), context_window=2048)
    done = attempt(CALC_2, model, tmp_path, limits(context_window=2048, max_tokens=256))
    assert len(model.requests) == 9 and model.violations == [] and done.stats.exit_reason == "submitted"
    assert len(model.requests[-1]) < 2 + 2 * 8 and done.stats.compactions >= 1  # old exchanges elided or dropped
    first = done.steps[0].output
    assert "characters cut" in first and first.startswith("1\n2\n") and first.rstrip().endswith("30000")


def test_epochs_use_different_seeds_and_no_secret_is_written(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_EVAL_API_KEY", "sk-test-secret-4711")
    with serve(replies(LOOK, FIX, LOOK, FIX)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, epochs=2, workers=1, seed=7), 0, 1)
    assert {r.epoch for r in result.records.values()} == {0, 1}
    assert {r["seed"] for r in server.requests} == {7, 8}
    for path in result.folder.rglob("*"):
        if path.is_file():
            assert "sk-test-secret-4711" not in path.read_text(errors="replace"), path


def test_compact_elides_old_observations_first_and_always_fits() -> None:
    counter = TokenCounter()
    big = "x" * 1500  # unseen: 1,500 tokens each
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "issue"}]
    for n in range(6):
        messages += [{"role": "assistant", "content": f"step {n}"}, {"role": "user", "content": big}]
    fitted = compact(messages, 3000, 3000, counter)
    assert counter.estimate(fitted) <= 3000
    assert fitted[3]["content"] == ELIDED and fitted[-1]["content"] == big and fitted[2]["content"] == "step 0"
    huge = [{"role": "system", "content": "s"}, {"role": "user", "content": "y" * 100_000}]
    assert counter.estimate(compact(huge, 1000, 2000, counter)) <= 2000


def test_the_context_only_appends_between_rare_compactions() -> None:
    """Each request repeats the previous one whole, but at a compaction; a compaction goes down
    to half the budget and keeps what it elided before, so the requests stay a cacheable prefix."""
    counter = TokenCounter()
    context = Context([{"role": "system", "content": "s" * 500}, {"role": "user", "content": "issue " * 100}],
                      budget=8000, counter=counter)
    requests = []
    for n in range(40):
        requests.append(context.request())
        counter.observe(requests[-1], tokens(requests[-1]))  # as a server reports it
        context.append({"role": "assistant", "content": f"step {n}\n```bash\ncat file{n}\n```"})
        context.append({"role": "user", "content": f"output {n} " + "y" * 1500})
    assert all(tokens(r) <= 8000 for r in requests)  # as the server counts
    cut = [n for n in range(1, 40) if requests[n][: len(requests[n - 1])] != requests[n - 1]]
    # 40 steps of ~660 tokens: the window fills at step 12, then each compaction frees ~4000, 6 steps' worth
    assert 3 <= len(cut) <= 5 and context.compactions == len(cut)
    assert min(b - a for a, b in itertools.pairwise(cut)) >= 5
    for n in cut:  # a compaction keeps the system prompt and the issue, and goes down to the low-water mark
        assert requests[n][:2] == requests[n - 1][:2]
        assert tokens(requests[n]) <= 8000 * 0.5 + 700
    assert context.repeated_chars / context.sent_chars > 0.75


def test_repeated_prefix_counts_what_a_server_could_reuse() -> None:
    a = [{"role": "system", "content": "abc"}, {"role": "user", "content": "hello world"}]
    assert repeated_prefix([], a) == 0
    assert repeated_prefix(a, [*a, {"role": "assistant", "content": "x"}]) == len("systemabcuserhello world")
    assert repeated_prefix(a, [a[0], {"role": "user", "content": "hello there"}]) == len("systemabcuserhello ")


def test_the_counter_learns_what_the_server_counted() -> None:
    counter = TokenCounter()
    first = [{"role": "system", "content": "s" * 300}, {"role": "user", "content": "i" * 900}]
    assert counter.estimate(first) == 1200 + 16  # unseen text: a token a byte, the most a tokenizer makes
    reply, output = "r" * 60, "7" * 3000
    counter.observe(first, 416, reply, 20)
    assert counter.estimate(first) == 416  # as the server counted it
    grown = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": output}]
    assert counter.estimate(grown) == 416 + 28 + 3008  # the reply by its own usage, the output unseen
    counter.observe(grown, 416 + 28 + 2500)
    later = [*grown, {"role": "assistant", "content": "ok"}]
    assert counter.estimate(later) == 2944 + 10  # extends what was counted: exact but for the new
    compacted = [*first, {"role": "user", "content": output}]  # not an extension: each text's own count
    assert counter.estimate(compacted) == 416 + 2500  # the counts add up to what the server counted
    assert counter.cost(output) == 2500
    counter.observe(first[:1], 216)  # shorter after a compaction: still a count
    assert counter.trusted
    counter.observe([*first[:1], *grown[2:]], 100)  # shrank while growing: Ollama 0.30 counting uncached only
    assert not counter.trusted and counter.cost("x" * 50) == 58


READ_ON = "Let me read more of the code.\n```bash\nseq 100000 101000\n```"


def explorer(reads: int) -> Callable[[list[dict[str, str]]], str]:
    """A model that finds its place in the conversation, as a model does, by its own replies: it
    reads `reads` times (~7 KB each), then fixes calc-2, then submits."""

    def reply(messages: list[dict[str, str]]) -> str:
        mine = [m["content"] for m in messages if m["role"] == "assistant"]
        if FIX in mine:
            return SUBMIT_REPLY
        return READ_ON if mine.count(READ_ON) < reads else FIX

    return reply


def test_a_model_that_reads_for_24_steps_reaches_its_fix_in_an_8192_window(tmp_path: Path) -> None:
    """Compactions elide the observations and keep the model's replies, with the stubs and the
    replies at what the server counted: at a token a byte for each, every compaction dropped the
    earlier exchanges and this model started over until the step limit, never getting past step 10."""
    given = limits(context_window=8192)
    model = ScriptedModel(explorer(24), context_window=8192)
    done = attempt(CALC_2, model, tmp_path, given)
    assert done.stats.exit_reason == "submitted" and "return hi" in done.patch
    assert done.stats.steps == 26 and done.stats.compactions >= 2 and model.violations == []
    for n, request in enumerate(model.requests):  # every reply so far is in each request
        assert [m["role"] for m in request].count("assistant") == n


@pytest.mark.parametrize("usage", [True, False])
def test_dense_output_never_passes_the_window(tmp_path: Path, usage: bool) -> None:
    """40 steps of numbers at a token a digit, at the default window and observation size: no
    request passes the window (a fixed 2.5 bytes a token did, most of all where the server's usage
    says nothing); with usage the window is used, not left empty."""
    numbers = "Look at the numbers.\n```bash\nseq 100000 140000\n```"
    given = limits(step_limit=41)
    model = ScriptedModel(replies(*[numbers] * 40), context_window=given.context_window, tokenize=dense,
                          reports_usage=usage)
    done = attempt(CALC_2, model, tmp_path, given)
    assert len(model.requests) == 41 and done.stats.exit_reason == "submitted"
    assert model.violations == []
    budget = given.context_window - given.max_tokens
    largest = max(dense(r) for r in model.requests)
    assert largest <= budget
    if usage:
        assert largest > 0.9 * budget and done.stats.compactions <= 5


def test_prompts_are_data_and_cuts_are_marked() -> None:
    assert "$problem_statement" not in PACKAGED.render("instance", problem_statement="it breaks")
    assert "it breaks" in PACKAGED.render("instance", problem_statement="it breaks")
    assert "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT" in PACKAGED.render("system")
    assert cut_middle("a" * 50 + "b" * 50, 20) == "a" * 10 + "\n[... 80 characters cut ...]\n" + "b" * 10


@pytest.mark.parametrize(("limit", "reason"),
                         [({"step_limit": 2}, "step_limit"), ({"token_budget": 10}, "token_budget")])
def test_limits_end_the_attempt_with_their_reason(tmp_path: Path, limit: dict[str, int], reason: str) -> None:
    done = attempt(CALC_2, ScriptedModel(replies(then=LOOK)), tmp_path, limits(**limit))
    assert (done.patch, done.stats.exit_reason) == ("", reason)
    assert done.stats.steps == (2 if reason == "step_limit" else 1)


SNOOP = "Let me look.\n```bash\nenv; cat /proc/self/environ /proc/1/environ 2>/dev/null | tr '\\\\0' '\\\\n'\n```"


@pytest.mark.parametrize("sandbox", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_no_secret_reaches_the_sandbox_a_file_or_a_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           request: pytest.FixtureRequest, sandbox: str) -> None:
    if sandbox == "docker":
        request.getfixturevalue("docker_client")
    monkeypatch.setenv("CI_EVAL_API_KEY", "sk-canary-4711")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs-canary-4712")
    with serve(replies(SNOOP)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, sandbox=sandbox), 0, 1)
    steps = trajectory(result.folder)["steps"]
    assert "PATH=" in steps[0]["output"]  # the command ran and its environment was shown
    assert "canary" not in json.dumps(server.requests)
    for path in result.folder.rglob("*"):
        if path.is_file():
            assert "canary" not in path.read_text(errors="replace"), path


def test_an_agent_config_changes_prompts_and_limits(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[prompts]\nsystem = "You are a careful engineer. Use bash."\n'
                      'instance = "TASK:\\n$problem_statement\\nGo."\n[limits]\nstep_limit = 2\n')
    with serve(replies(then=LOOK)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, agent_config=config), 0, 1)
    first = server.requests[0]["messages"]
    assert first[0]["content"] == "You are a careful engineer. Use bash."
    assert first[1]["content"].startswith("TASK:\n") and first[1]["content"].endswith("\nGo.")
    record = result.records[(CALC_2, 0)]
    assert (record.agent.exit_reason, record.agent.steps) == ("step_limit", 2)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["config"]["agent_config"] and manifest["identity"]["config_hash"] != \
        agent_settings(tmp_path, server.url).config_hash()  # another prompt is another run
    yaml_config = tmp_path / "agent.yaml"
    yaml_config.write_text("limits:\n  step_limit: 1\n")
    with serve(replies(then=LOOK)) as server:
        result = run_shard(agent_settings(tmp_path / "y", server.url, agent_config=yaml_config, step_limit=3), 0, 1)
    assert result.records[(CALC_2, 0)].agent.steps == 3  # a flag wins over the file


@pytest.mark.parametrize(("text", "needle"), [
    ('[prompts]\ninstance = "no placeholder here"\n', "must contain $problem_statement"),
    ('[prompts]\nobservation = "$output and $stdout"\n', "uses $stdout, which it is never given"),
    ('[prompts]\ntimeout = "cost: 5$"\n', "lone '$'"),
    ('[prompts]\nplan = "x"\n', "unknown prompt 'plan'"),
    ('[limits]\nstep_limit = -1\n', "positive number"),
    ('[limits]\ntemperature = 1\n', "unknown limit 'temperature'"),
    ('[limits]\nstep_limit = 2.5\n', "limit step_limit: Input should be a valid integer"),
    ('[limits]\nobservation_chars = 100\n', "limit observation_chars: Input should be greater than or equal to 200"),
    ('[model]\nname = "x"\n', "unknown section 'model'"),
    ('[prompts\n', "not valid TOML"),
])
def test_a_bad_agent_config_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(text)
    result = CliRunner().invoke(main, ["shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--sandbox",
                                       "local", "--agent-config", str(config), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


NETWORK_LOOK = ("What can I reach?\n```bash\nls /sys/class/net; echo ROUTES; tail -n +2 /proc/net/route; "
                "echo NAMES; getent hosts github.com pypi.org || echo unresolved\n```")


@pytest.mark.docker
@pytest.mark.parametrize("network", ["none", "bridge"])
def test_the_agent_container_has_no_route_out_unless_asked(docker_client: Any, tmp_path: Path, network: str) -> None:
    """Shown from inside the container (its interfaces, routes and what it can resolve), never by
    sending traffic anywhere: by default only loopback, no route, no name resolves."""
    with serve(replies(NETWORK_LOOK)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, sandbox="docker", agent_network=network), 0, 1)
    seen = trajectory(result.folder)["steps"][0]["output"]
    interfaces, rest = seen.split("ROUTES")
    routes, names = rest.split("NAMES")
    if network == "none":
        assert interfaces.split() == ["lo"] and routes.strip() == "" and "unresolved" in names, seen
    else:  # the flag is real: Docker's bridge gives an interface and a default route
        assert "eth0" in interfaces.split() and "00000000" in routes, seen
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["identity"]["agent_network"] == network
    assert ours(docker_client, result.folder) == []


def test_an_agent_configs_limits_are_settings_under_the_flags(tmp_path: Path) -> None:
    """Each `[limits]` name is the setting of that name; the wiring puts the file's values under
    the flags, so the derived limits (the instance's wall clock) and the manifest follow them."""
    from ci_eval import agent_config
    from ci_eval.agent_config import LimitOverrides
    from ci_eval.config import Settings
    from ci_eval.shard import agent_limits

    for name, spec in LimitOverrides.model_fields.items():
        assert spec.annotation == Settings.model_fields[name].annotation | None, name  # type: ignore[operator]
    config = tmp_path / "agent.toml"
    config.write_text("[limits]\nagent_timeout = 60\nstep_limit = 5\n")
    given = settings(tmp_path, agent_config=config, step_limit=7)
    loaded = agent_config.read_agent_config(config)
    merged = resolved(given, agent_config=loaded)
    assert (merged.agent_timeout, merged.step_limit, loaded.limits.step_limit) == (60, 7, 5)
    assert agent_limits(merged).agent_timeout == 60 and merged.instance_time_limit() == 60 + 1800 + 900
    assert merged.hashed()["step_limit"] == 7


def test_the_manifest_the_store_and_the_trajectory_name_the_one_resolved_run(tmp_path: Path) -> None:
    """resolve() makes one Settings: the agent config's step limit in the manifest's config, its
    hash on every result line and in the trajectory, with the version that wrote it."""
    from ci_eval import __version__
    from ci_eval.shard_folder import read_manifest, read_trajectory

    config = tmp_path / "agent.toml"
    config.write_text("[limits]\nstep_limit = 3\n")
    with serve(replies(LOOK, FIX)) as server:
        result = run_shard(agent_settings(tmp_path, server.url, agent_config=config, workers=1), 0, 1)
    manifest = read_manifest(result.folder / "manifest.json")
    run = manifest.identity["config_hash"]
    assert manifest.config["step_limit"] == 3 and manifest.config["agent_config"] != str(config)
    lines = [json.loads(line) for line in (result.folder / "results.jsonl").read_text().splitlines()]
    assert lines and {line["config_hash"] for line in lines} == {run}
    saved = read_trajectory(result.folder / "logs" / CALC_2 / "epoch-0" / "trajectory.json")
    assert (saved.config_hash, saved.ci_eval_version, saved.instance_id, saved.attempt) == (run, __version__, CALC_2, 1)
    assert saved.stats.exit_reason == "submitted" and saved.usage.calls == len(saved.steps) == 3  # look, fix, submit


@dataclass
class SlowModel(ScriptedModel):
    """A model that takes its time, as a CPU runner's does."""

    delay: float = 0.15

    async def complete(self, messages: list[Any], seed: int) -> Any:
        await asyncio.sleep(self.delay)
        return await super().complete(messages, seed)


def test_a_heartbeat_names_each_running_instance_its_phase_step_and_time(tmp_path: Path) -> None:
    """The pool and the agent as a shard runs them, with the heartbeat every 0.1 s instead of
    every few minutes: between the per-instance lines the log says what runs and how far it is."""
    model = SlowModel(replies(LOOK, LOOK, LOOK, FIX))
    stream = io.StringIO()

    async def run() -> None:
        backend = LocalBackend(FIXTURES / "repos")
        show = PlainLog(1, 0, stream)
        beat = asyncio.create_task(heartbeat(show, 0.1))
        try:
            agent = solver(bash_agent(Options(limits(), PACKAGED)), limits(), model, seed=0, network=False,
                           config_hash="")
            pool = Pool(backend, agent, ResultStore(tmp_path), tmp_path, Clocks(600, 120), show)
            await pool.run([Job(fixture(CALC_2))])
        finally:
            beat.cancel()
            await backend.close()

    asyncio.run(run())
    lines = stream.getvalue().splitlines()
    beats = [line for line in lines if line.startswith("ci-eval: [0/1] running ")]
    assert beats and lines[-1].startswith("[1/1] ")  # beats while it ran, then the instance's own line
    assert any(re.search(rf"running {CALC_2} agent step [1-5] 0m0\ds$", line) for line in beats), beats
    assert any(re.search(rf"running {CALC_2} grading step 5 \dm\d\ds$", line) for line in beats), beats


PROMPT_SECONDS, TOKEN_SECONDS = 0.02, 0.1  # a CPU model: processing a prompt token, generating one


def call(prompt: int, new: int, completion: int = 100, cached: int | None = None) -> ModelCall:
    return ModelCall(prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion,
                     seconds=new * PROMPT_SECONDS + completion * TOKEN_SECONDS)


def test_a_call_whose_speed_shows_a_whole_prompt_processed_again_is_flagged() -> None:
    usage = Usage()
    usage.per_call = [call(1000, 1000), call(1300, 300), call(1600, 1600), call(1900, 300), call(900, 900),
                      call(1200, 300)]  # the third processed all 1,600 again; the fifth is a compaction
    assert usage.reprocessed() == 1
    assert [c.reprocessed for c in usage.per_call] == [None, False, True, False, False, False]
    # never more than the prompt really took: generation is priced at the fastest call's seconds per token
    assert 0.8 * 1600 * PROMPT_SECONDS <= (usage.per_call[2].prompt_seconds or 0) <= 1600 * PROMPT_SECONDS
    told = Usage()
    told.per_call = [call(1000, 1000, cached=0), call(1300, 300, cached=1000), call(1600, 300, cached=0)]
    assert told.reprocessed() == 1 and told.per_call[2].reprocessed  # the server said: nothing from the cache


def test_an_attempt_counts_the_steps_its_server_processed_whole_again(tmp_path: Path) -> None:
    """The agent against a model whose time follows what a prefix cache would reuse, but for
    the third request, which the cache misses (Ollama reports no cached tokens)."""
    calls: list[int] = []

    def timing(before: list[Any], request: list[Any]) -> float:
        calls.append(len(calls))
        new = tokens(request) - (0 if len(calls) == 3 else shared_tokens(before, request))
        return new * PROMPT_SECONDS + 20 * TOKEN_SECONDS

    model = ScriptedModel(replies(LOOK, LOOK, LOOK, LOOK, FIX), timing=timing)
    done = attempt(CALC_2, model, tmp_path)
    assert done.stats.exit_reason == "submitted" and done.stats.reprocessed_steps == 1
    saved = json.loads((tmp_path / "trajectory.json").read_text())["usage"]["per_call"]
    assert [c.get("reprocessed") for c in saved].index(True) == 2

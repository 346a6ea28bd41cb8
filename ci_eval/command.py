"""The command seam: any agent, in any language, run as a shell command once per attempt.

The command (`--agent-command`) runs through `sh -c` on the host, in a scratch folder of its own
that is also its HOME and TMPDIR, with an environment made here from nothing but PATH, the locale
and:

- CI_EVAL_CALLER_DIR: the folder ci-eval was started in (in the action, the caller's checkout),
  where the agent's own files are;
- CI_EVAL_TASK: a JSON file of the task (`attempt.Task`);
- CI_EVAL_EXEC: an executable; `"$CI_EVAL_EXEC" 'cmd'` runs cmd in the attempt's sandbox at the
  repository's root, as the built-in agent's commands run, prints what the built-in agent's model
  would be shown of its output and exits with its status;
- OPENAI_BASE_URL, OPENAI_API_KEY, CI_EVAL_MODEL: an endpoint served here on loopback for this
  attempt alone, with a key of its own, in front of the real model server: every call is counted
  and a call past a limit is refused (HTTP 400, the reason in the error's message and code);
- CI_EVAL_DEADLINE: when the attempt's time ends, in epoch seconds.

When the command exits 0 the agent has submitted, and the patch is what the sandbox's repository
holds; another status ends the attempt `agent_failed`. At the deadline, or once a limit refused
a call, its process group is ended. Its output and error are kept in the instance's logs.

Where it can (bubblewrap, and root or `sudo -n`), the command runs in a PID namespace of its own
(no ancestor's /proc/PID/environ to read: not ci-eval's, not the CI step's), on a read-only view
of the machine with /run (the Docker socket) and ci-eval's sandboxes hidden, without
capabilities, as the user ci-eval runs for. Elsewhere it runs as a plain child, and is refused
where a secret could be read (an API key is set, or in CI). It shares the host's network: the
counting covers what goes through OPENAI_BASE_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from ci_eval.attempt import Agent, Attempt, LimitReached, Options
from ci_eval.contracts.status import ExitReason
from ci_eval.errors import InfraError, InputError
from ci_eval.github import in_actions
from ci_eval.model import Message, Reply
from ci_eval.sandbox import isolation

log = logging.getLogger(__name__)

AGENT_OUT, AGENT_ERR = "agent.stdout", "agent.stderr"  # in the instance's logs
KEPT = 1024 * 1024  # of each stream; the rest is counted, not kept
GRACE = 5.0  # seconds an agent has to end by itself after a refusal or SIGTERM
_PASSED_ON = ("PATH", "LANG", "LC_ALL", "TZ")
# What CI_EVAL_EXEC is: a stdlib-only client of the attempt's endpoint, run by ci-eval's Python.
_EXEC = '''#!{python} -I
import json, sys, urllib.request
if len(sys.argv) != 2:
    sys.exit("usage: $CI_EVAL_EXEC 'a shell command'")
request = urllib.request.Request({url!r}, data=json.dumps({{"command": sys.argv[1]}}).encode(),
                                 headers={{"Authorization": "Bearer {key}", "Content-Type": "application/json"}})
with urllib.request.urlopen(request, timeout=None) as answer:
    out = json.load(answer)
sys.stdout.write(out["output"])
sys.exit(out["returncode"] % 256)
'''


def command_agent(options: Options) -> Agent:
    """The agent of `--agent-command`; refused at once where it could read a secret."""
    command = options.command
    if not command:
        raise InputError("the command seam needs --agent-command")
    if confinement() is None:
        if in_actions() or os.environ.get("CI_EVAL_API_KEY"):
            raise InputError("--agent-command cannot be kept from ci-eval's secrets here (it needs bubblewrap, and "
                             "root or sudo -n): install bubblewrap (apt-get install bubblewrap)")
        log.warning("--agent-command runs unconfined here (no bubblewrap, or neither root nor sudo -n)")

    async def agent(attempt: Attempt) -> ExitReason:
        with tempfile.TemporaryDirectory(prefix="ci-eval-agent-") as scratch:
            async with endpoint(attempt, options.model) as (url, key, ended):
                return await run(command, attempt, Path(scratch), url, key, ended, options.model)

    return agent


async def run(command: str, attempt: Attempt, scratch: Path, url: str, key: str, ended: asyncio.Event,
              model: str) -> ExitReason:
    """The command, to its end, the deadline's or a limit's."""
    argv = ["sh", "-c", command]
    if (confined := confinement()) is not None:
        argv = [*confined, "--bind", str(scratch), str(scratch), "--chdir", str(scratch), "--", *as_caller(), *argv]
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=scratch, env=environment(attempt, scratch, url, key, model), start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    logs = attempt.logs
    kept = [asyncio.create_task(keep(process.stdout, logs / AGENT_OUT)),
            asyncio.create_task(keep(process.stderr, logs / AGENT_ERR))]
    try:
        left = attempt.deadline - time.time()
        waited = asyncio.create_task(process.wait())
        stop = asyncio.create_task(ended.wait())
        await asyncio.wait({waited, stop}, timeout=max(0.0, left), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not waited.done() and ended.is_set():  # a limit refused a call: the agent may end by itself
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waited), GRACE)
        if not waited.done():
            attempt.ended = attempt.ended or ExitReason.TIME_LIMIT
            await end(process, waited)
        await asyncio.wait(kept, timeout=GRACE)  # a process that left the group may hold a pipe open
    finally:
        if process.returncode is None:
            signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        for task in kept:
            task.cancel()
    attempt.trajectory.agent_returncode = process.returncode
    if attempt.ended is not None:
        return attempt.ended
    return ExitReason.SUBMITTED if process.returncode == 0 else ExitReason.AGENT_FAILED


async def end(process: asyncio.subprocess.Process, waited: asyncio.Task[int]) -> None:
    """SIGTERM to the whole group, then SIGKILL after GRACE."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        signal_group(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waited), GRACE)
            return


def signal_group(group: int, sig: signal.Signals) -> None:
    """A signal to the agent's whole group; through sudo when the group leader is sudo's (root's)."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        subprocess.run(["sudo", "-n", "kill", "-s", sig.name.removeprefix("SIG"), "--", f"-{group}"],
                       capture_output=True, check=False)


async def keep(stream: asyncio.StreamReader, path: Path) -> None:
    """A stream into a file, its first KEPT bytes; the rest is read (the agent never blocks on a
    full pipe) and only counted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dropped = 0
    with path.open("wb") as out:
        while chunk := await stream.read(65536):
            room = KEPT - out.tell()
            out.write(chunk[:max(0, room)])
            dropped += max(0, len(chunk) - max(0, room))
        if dropped:
            out.write(f"\n[ci-eval: {dropped} more bytes not kept]\n".encode())


def environment(attempt: Attempt, scratch: Path, url: str, key: str, model: str) -> dict[str, str]:
    """All the command gets: no variable of ci-eval's own, so no key and no CI token."""
    task = scratch / "task.json"
    task.write_text(json.dumps(asdict(attempt.task), indent=1), encoding="utf-8")
    client = scratch / "ci-eval-exec"
    client.write_text(_EXEC.format(python=sys.executable, url=f"{url}/exec", key=key), encoding="utf-8")
    client.chmod(0o755)
    return {**{k: os.environ[k] for k in _PASSED_ON if k in os.environ}, "HOME": str(scratch), "TMPDIR": str(scratch),
            "CI_EVAL_CALLER_DIR": os.getcwd(),
            "CI_EVAL_TASK": str(task), "CI_EVAL_EXEC": str(client), "OPENAI_BASE_URL": f"{url}/v1",
            "OPENAI_API_KEY": key, "CI_EVAL_MODEL": model,
            "CI_EVAL_DEADLINE": f"{attempt.deadline:.0f}"}


@functools.cache  # the same for every attempt of the process
def confinement() -> list[str] | None:
    """bubblewrap's command line that confines the agent, or None where it cannot run."""
    if sys.platform != "linux" or not shutil.which("bwrap") or not shutil.which("setpriv"):
        return None
    if os.geteuid() == 0:
        sudo: list[str] = []
    elif shutil.which("sudo") and _sudo_works():
        sudo = ["sudo", "-n", "--preserve-env"]
    else:
        return None
    hidden = [arg for folder in ("/run", "/var/run", str(isolation.BASE)) if os.path.isdir(folder)
              and not os.path.islink(folder) for arg in ("--tmpfs", folder)]
    return [*sudo, "bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *hidden]


def as_caller() -> list[str]:
    """Inside bwrap: back to the user ci-eval runs for, with no way to gain privileges."""
    uid, gid = os.getuid(), os.getgid()
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups" if uid else "--keep-groups",
            "--no-new-privs", "--"]


def _sudo_works() -> bool:
    return subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0


@contextlib.asynccontextmanager
async def endpoint(attempt: Attempt, model: str) -> AsyncIterator[tuple[str, str, asyncio.Event]]:
    """The attempt's own server on loopback: the model (counted) and the sandbox (as steps)."""
    key = secrets.token_urlsafe(24)
    ended = asyncio.Event()
    app = web.Application(client_max_size=64 * 1024 * 1024)

    def allowed(request: web.Request) -> bool:
        return secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {key}")

    async def models(request: web.Request) -> web.Response:
        if not allowed(request):
            return refused(401, "wrong key", "invalid_api_key")
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model", "owned_by": "ci-eval"}]})

    async def chat(request: web.Request) -> web.Response:
        if not allowed(request):
            return refused(401, "wrong key", "invalid_api_key")
        body = await request.json()
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not all(_text_message(m) for m in messages):
            return refused(400, "messages must be a list of {role, content} with text content", "invalid_request")
        if body.get("stream"):
            return refused(400, "streaming is not supported by ci-eval's endpoint", "invalid_request")
        try:
            reply = await attempt.complete(messages)
        except LimitReached as stop:
            ended.set()
            return refused(400, str(stop), stop.reason.value)
        except InfraError as exc:
            return refused(502, str(exc), "model_error")
        record(attempt, messages, reply.content)
        return web.json_response(completion(attempt, reply, model))

    async def execute(request: web.Request) -> web.Response:
        if not allowed(request):
            return refused(401, "wrong key", "invalid_api_key")
        body = await request.json()
        command = body.get("command") if isinstance(body, dict) else None
        if not isinstance(command, str):
            return refused(400, "give {\"command\": \"...\"}", "invalid_request")
        out, step = await attempt.execute(command)
        return web.json_response({"output": step.output, "returncode": out.returncode, "timed_out": out.timed_out})

    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/exec", execute)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", key, ended
    finally:
        await runner.cleanup()


def _text_message(message: Any) -> bool:
    return isinstance(message, dict) and isinstance(message.get("role"), str) and \
        isinstance(message.get("content"), str)


def record(attempt: Attempt, messages: list[Message], reply: str) -> None:
    """The conversation into the trajectory: what the request added to the last one (all of it
    after a cut), then the reply."""
    said = attempt.trajectory.messages
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    new = plain[len(said):] if plain[: len(said)] == said else plain
    for message in [*new, {"role": "assistant", "content": reply}]:
        attempt.say(message)


def completion(attempt: Attempt, reply: Reply, model: str) -> dict[str, Any]:
    """An OpenAI chat completion of the reply, with the usage the real server reported."""
    usage: dict[str, Any] = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                             "total_tokens": reply.prompt_tokens + reply.completion_tokens}
    if reply.cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    return {"id": f"ci-eval-{attempt.usage.calls}", "object": "chat.completion", "created": 0,
            "model": model, "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply.content}}]}


def refused(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": code}},
                             status=status)

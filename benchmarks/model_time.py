"""Model time per agent step: how much of each request a prompt cache can reuse, how many prompt
tokens the server must process per step, and how long a step takes.

Two runs, each at the defaults and at --context-window 8192, for this tree and (with --before
REV) for an earlier commit checked out beside it:

- scripted: a model that reads the repository for --steps steps (~7 KB of output each), then
  fixes calc-2 and submits; served by tests/openai_server.py, whose prompt cache reports what
  it reused. Seconds per step are projected for granite4:tiny-h on an ubuntu-latest runner from
  public figures (--pp and --gen tokens/s), since the scripted model answers at once.
- local (--local-model): the real llama.cpp server with Gemma 3 270M on two demo instances,
  behind a recording proxy; seconds are measured here (2 cores).

    python benchmarks/model_time.py [--before REV] [--local-model] [--steps 24]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
READ = "Let me read more of the code.\n```bash\nseq 100000 101000\n```"
LOCAL_IDS = ["ci-eval-fixtures__calc-2", "ci-eval-fixtures__textkit-4"]


def _server_module() -> Any:
    """tests/openai_server.py of this tree, whatever tree the child imports ci_eval from."""
    spec = importlib.util.spec_from_file_location("openai_server", ROOT / "tests" / "openai_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["openai_server"] = module
    spec.loader.exec_module(module)
    return module


def figures(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """From each call's request messages, usage and seconds: the per-step figures, measured by
    this tree's ci-eval whatever tree made the calls."""
    from ci_eval.agent import repeated_prefix as repeated

    sizes = [sum(len(m["role"]) + len(m["content"]) for m in c["messages"]) for c in calls]
    reused = [0] + [repeated(a["messages"], b["messages"]) for a, b in itertools.pairwise(calls)]
    prompt = [c["prompt_tokens"] for c in calls]
    # Tokens processed: the server's word where it gives one, else the share of text not repeated.
    processed = [c["prompt_tokens"] - c["cached"] if c["cached"] is not None else
                 round(c["prompt_tokens"] * (1 - r / s)) for c, r, s in zip(calls, reused, sizes, strict=True)]
    return {"steps": len(calls), "share": sum(reused) / max(sum(sizes), 1),
            "prompt_per_step": statistics.mean(prompt) if prompt else 0,
            "processed_per_step": statistics.mean(processed) if processed else 0,
            "completion_per_step": statistics.mean(c["completion_tokens"] for c in calls) if calls else 0,
            "seconds_per_step": statistics.mean(c["seconds"] for c in calls) if calls else 0}


# ----------------------------------------------------------------------------- the child runs


def child_scripted(window: int | None, steps: int) -> dict[str, Any]:
    from ci_eval.config import load_settings
    from ci_eval.shard import run_shard

    server_mod = _server_module()
    script = server_mod.replies(*[READ] * steps, server_mod.FIX)
    with tempfile.TemporaryDirectory() as tmp, server_mod.serve(script, context_window=1 << 20) as server:
        flags: dict[str, Any] = {
            "dataset": str(ROOT / "tests/fixtures/instances.jsonl"), "instance_ids": ["ci-eval-fixtures__calc-2"],
            "output": Path(tmp) / "out", "base_url": server.url, "model": "scripted", "sandbox": "local",
            "repos_dir": ROOT / "tests/fixtures/repos", "step_limit": steps + 5}
        if window is not None:
            flags["context_window"] = window
        cfg = load_settings(flags)
        record = run_shard(cfg, 0, 1).records[("ci-eval-fixtures__calc-2", 0)]
        calls = [{"messages": r["messages"], "prompt_tokens": server_mod.tokens(r["messages"]), "cached": c,
                  "completion_tokens": 0, "seconds": 0.0} for r, c in zip(server.requests, server.cached, strict=True)]
    return {"calls": calls, "status": record.status, "window": cfg.context_window,
            "observation_chars": cfg.observation_chars}


def child_local(window: int | None, base_url: str, steps: int) -> dict[str, Any]:
    """The agent on the local model through the parent's recording proxy; the parent has the calls."""
    from ci_eval.config import load_settings
    from ci_eval.shard import run_shard

    with tempfile.TemporaryDirectory() as tmp:
        flags: dict[str, Any] = {
            "dataset": str(ROOT / "tests/fixtures/instances.jsonl"), "instance_ids": LOCAL_IDS,
            "output": Path(tmp) / "out", "base_url": base_url, "model": "gemma3-270m", "sandbox": "local",
            "repos_dir": ROOT / "tests/fixtures/repos", "step_limit": steps, "workers": 1, "max_tokens": 256}
        if window is not None:
            flags["context_window"] = window
        cfg = load_settings(flags)
        records = run_shard(cfg, 0, 1).records
    return {"status": ",".join(r.status for r in records.values()), "window": cfg.context_window,
            "observation_chars": cfg.observation_chars,
            "exit_reasons": ",".join(str(r.agent.exit_reason) for r in records.values())}


class Proxy:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.url = ""


@contextmanager
def recording(upstream: str) -> Iterator[Proxy]:
    """A pass-through for the OpenAI API that keeps each chat request, its usage and its time.
    It folds the system prompt into the first user turn (Gemma's format drops it), so that an
    earlier tree is measured with the model seeing what it is meant to see."""
    from ci_eval.model import fold_system

    state = Proxy()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def relay(self, body: bytes | None) -> bytes:
            request = urllib.request.Request(upstream.rstrip("/") + self.path.removeprefix("/v1"), data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=600) as response:
                data: bytes = response.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return data

        def do_GET(self) -> None:
            self.relay(None)

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request["messages"] = fold_system(request["messages"])
            body = json.dumps(request).encode()
            start = time.monotonic()
            answer = json.loads(self.relay(body))
            usage = answer.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens", (answer.get("timings") or {}).get("cache_n"))
            state.calls.append({"messages": json.loads(body)["messages"], "cached": cached,
                                "prompt_tokens": usage.get("prompt_tokens", 0),
                                "completion_tokens": usage.get("completion_tokens", 0),
                                "seconds": time.monotonic() - start})

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


# ----------------------------------------------------------------------------- the parent


def run_child(tree: Path, scenario: str, window: int | None, steps: int, base_url: str = "") -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", scenario, "--tree", str(tree), "--steps", str(steps),
            "--base-url", base_url] + (["--window", str(window)] if window else [])
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{scenario} run in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False,
                           capture_output=True)


def table(title: str, rows: list[tuple[str, dict[str, Any]]], pp: float, gen: float, measured: bool) -> None:
    print(f"\n{title}")
    print(f"{'run':<28} {'window':>7} {'obs':>6} {'steps':>5} {'repeated':>9} {'prompt/step':>12} "
          f"{'processed/step':>15} {'s/step':>8}  outcome")
    for name, f in rows:
        seconds = f["seconds_per_step"] if measured else f["processed_per_step"] / pp + 250 / gen
        print(f"{name:<28} {f['window']:>7} {f['observation_chars']:>6} {f['steps']:>5} {f['share']:>9.1%} "
              f"{f['prompt_per_step']:>12.0f} {f['processed_per_step']:>15.0f} {seconds:>8.1f}  {f['status']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="an earlier commit to measure beside this tree")
    parser.add_argument("--local-model", action="store_true", help="also run the real local model")
    parser.add_argument("--steps", type=int, default=24, help="exploration steps (scripted) or the step limit (local)")
    parser.add_argument("--local-steps", type=int, default=12)
    parser.add_argument("--pp", type=float, default=60.0, help="prompt tokens/s for the projection")
    parser.add_argument("--gen", type=float, default=8.0, help="generated tokens/s for the projection")
    parser.add_argument("--child", choices=["scripted", "local"], help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        sys.path.insert(0, str(args.tree))
        result = (child_scripted(args.window, args.steps) if args.child == "scripted"
                  else child_local(args.window, args.base_url, args.steps))
        print(json.dumps(result))
        return

    sys.path.insert(0, str(ROOT))  # the parent measures with this tree's ci-eval
    trees = [("now", ROOT)]
    with worktree(args.before) if args.before else _nothing() as before:
        if before is not None:
            trees.insert(0, (f"before ({args.before[:10]})", before))
        rows = []
        for name, tree in trees:
            for label, window in (("defaults", None), ("8192", 8192)):
                outcome = run_child(tree, "scripted", window, args.steps)
                rows.append((f"{name}, {label}", {**figures(outcome.pop("calls")), **outcome}))
        table(f"scripted: {args.steps} steps reading ~7 KB, then the fix; seconds projected at {args.pp:g} prompt "
              f"and {args.gen:g} generated tokens/s, 250 tokens a reply", rows, args.pp, args.gen, measured=False)
        if args.local_model:
            from ci_eval import llama_server

            rows = []
            with tempfile.TemporaryDirectory() as tmp, llama_server.serve(32768, Path(tmp) / "server.log") as url, \
                    recording(url) as proxy:
                for name, tree in trees:
                    for label, window in (("defaults", None), ("8192", 8192)):
                        proxy.calls.clear()
                        outcome = run_child(tree, "local", window, args.local_steps, proxy.url)
                        rows.append((f"{name}, {label}", {**figures(proxy.calls), **outcome}))
            table(f"local model: Gemma 3 270M on llama.cpp, {len(LOCAL_IDS)} instances, {args.local_steps} steps at "
                  "most, 256-token replies; seconds measured", rows, args.pp, args.gen, measured=True)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()

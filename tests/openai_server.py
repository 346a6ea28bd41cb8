"""A small real HTTP server that speaks the OpenAI chat API with scripted replies.

It counts tokens by its own rule (one per 3 UTF-8 bytes, 8 per message, as a strict stand-in
for a tokenizer) and answers 400, like llama.cpp does, to any request whose prompt plus
max_tokens exceeds the context window; every such request is also kept in `violations`.

Like llama.cpp and Ollama it keeps a prompt cache per slot: a request reuses the longest
leading part it shares with a slot's last prompt, and takes that slot. What it reused is
reported as OpenAI does (`usage.prompt_tokens_details.cached_tokens`), as llama.cpp does
(`timings.cache_n`), or not at all (Ollama), as `cache_report` says.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A scripted step: a reply text, or an HTTP status to answer with instead.
Step = str | int
Script = Callable[[list[dict[str, str]]], Step]


def tokens(messages: list[dict[str, str]]) -> int:
    return sum(math.ceil(len(m["content"].encode()) / 3) + 8 for m in messages)


def shared_tokens(before: list[dict[str, str]], after: list[dict[str, str]]) -> int:
    """The tokens at the start of `after` that `before` had too, by the same rule."""
    same = 0
    for old, new in zip(before, after, strict=False):
        if old == new:
            same += tokens([new])
            continue
        if old["role"] == new["role"]:
            a, b = old["content"].encode(), new["content"].encode()
            common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            same += 8 + common // 3
        break
    return same


@dataclass
class Server:
    script: Script
    model: str = "scripted"
    context_window: int = 8192
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    violations: list[int] = field(default_factory=list)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (request arrived, reply sent)
    url: str = ""
    cache_report: str | None = "openai"  # "openai", "llama.cpp" or None
    down: bool = False  # while set, every request is answered 503, as a dying server's proxy would
    slots: list[list[dict[str, str]]] = field(default_factory=list)  # each slot's last prompt
    cached: list[int] = field(default_factory=list)  # per answered request

    def reuse(self, messages: list[dict[str, str]], slots: int) -> int:
        """Take a slot as llama.cpp does: the one whose last prompt this one mostly continues,
        else a free one, else the least recently used; reuse what they share."""
        shared = [shared_tokens(prompt, messages) for prompt in self.slots]
        best = max(range(len(shared)), key=shared.__getitem__, default=None)
        if best is not None and shared[best] >= 0.5 * tokens(self.slots[best]):
            self.slots.pop(best)
            reused = shared[best]
        else:
            if len(self.slots) >= slots:
                self.slots.pop(0)
            reused = 0
        self.slots.append(messages)  # most recently used last
        return reused


SUBMIT_REPLY = "I am done.\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"
# The reply that fixes the fixtures' calc-2 (clamp returns lo above the range).
FIX = """The high branch returns lo. I fix it.
```bash
python3 - <<'EOF'
import pathlib
p = pathlib.Path("calc/ranges.py")
s = p.read_text()
p.write_text(s.replace("    if x > hi:\\n        return lo", "    if x > hi:\\n        return hi"))
EOF
```"""


def replies(*steps: Step, then: Step = SUBMIT_REPLY) -> Script:
    """A script that plays the steps in order, then repeats `then`."""
    queue = list(steps)
    lock = threading.Lock()

    def next_step(_: list[dict[str, str]]) -> Step:
        with lock:
            return queue.pop(0) if queue else then

    return next_step


@contextmanager
def serve(script: Script, context_window: int = 8192, model: str = "scripted", cache_report: str | None = "openai",
          slots: int = 4) -> Iterator[Server]:
    state = Server(script, model, context_window, cache_report=cache_report)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)
            state.statuses.append(status)

        def do_GET(self) -> None:
            if state.down:
                self.send(503, {"error": {"message": "server down", "type": "server_error"}})
            elif self.path.rstrip("/").endswith("/models"):
                self.send(200, {"object": "list", "data": [{"id": state.model, "object": "model", "created": 0,
                                                            "owned_by": "tests"}]})
            else:
                self.send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            arrived = time.monotonic()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state.down:
                self.send(503, {"error": {"message": "server down", "type": "server_error"}})
                return
            state.requests.append(body)
            messages = body["messages"]
            used = tokens(messages)
            if used + body.get("max_tokens", 0) > state.context_window:
                state.violations.append(used)
                self.send(400, {"error": {"message": f"context length {state.context_window} exceeded: {used}"}})
                return
            step = state.script(messages)
            if isinstance(step, int):
                self.send(step, {"error": {"message": f"scripted {step}", "type": "server_error"}})
                return
            with lock:
                cached = state.reuse(messages, slots)
                state.cached.append(cached)
            made = math.ceil(len(step) / 3)
            body = {
                "id": f"chatcmpl-{len(state.requests)}", "object": "chat.completion", "created": int(time.time()),
                "model": state.model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": step}}],
                "usage": {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made},
            }
            if state.cache_report == "openai":
                body["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
            elif state.cache_report == "llama.cpp":
                body["timings"] = {"cache_n": cached, "prompt_n": used - cached, "predicted_n": made}
            self.send(200, body)
            state.timeline.append((arrived, time.monotonic()))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()

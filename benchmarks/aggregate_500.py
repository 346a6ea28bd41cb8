"""Time `ci-eval aggregate` over 500 instances in 10 shards, writing report.json, JUnit XML
and the Markdown summary, as download-artifact lays the shards out (one folder per artifact).

    python benchmarks/aggregate_500.py [--instances 500] [--shards 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from ci_eval.contracts.shard import Record
from ci_eval.report.aggregate import aggregate
from ci_eval.shard_folder import now

STATUSES = ["resolved", "unresolved", "unresolved", "empty_patch", "patch_failed", "resolved", "error", "timeout"]


def make_shards(root: Path, instances: int, shards: int) -> None:
    ids = [f"owner{n % 12}__repo{n % 12}-{n:05d}" for n in range(instances)]
    plan = [ids[k::shards] for k in range(shards)]
    identity = {"ci_eval_version": "0.1.0", "model": "granite4:tiny-h", "dataset": "SWE-bench/SWE-bench_Verified",
                "split": "test", "dataset_fingerprint": "f", "config_hash": "h", "base_url": "http://localhost:11434/v1"}
    for index, planned in enumerate(plan):
        folder = root / f"ci-eval-shard-{index}-attempt-1" / f"shard-{index}-attempt-1"
        folder.mkdir(parents=True)
        manifest = {"identity": identity, "shard": {"index": index, "of": shards, "attempt": 1},
                    "planned": planned, "plan": plan, "epochs": 1, "written_at": now()}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        lines = []
        for n, iid in enumerate(planned):
            f2p = [f"tests/test_{n}.py::test_{k}" for k in range(5)]
            p2p = [f"tests/test_p.py::test_{k}" for k in range(50)]
            status = STATUSES[n % len(STATUSES)]
            lines.append(Record.model_validate({
                "instance_id": iid, "repo": iid.rsplit("-", 1)[0].replace("__", "/"), "status": status,
                "error": {"kind": "docker", "message": "x"} if status in ("error", "timeout") else None,
                "patch": "diff --git a/x b/x\n" * 40,
                "tests": {"FAIL_TO_PASS": {"success": f2p} if status == "resolved" else {"failure": f2p},
                          "PASS_TO_PASS": {"success": p2p}},
                "timings": {"total": 100.0 + n, "eval": 30.0}, "started_at": now(), "finished_at": now(),
            }).model_dump_json())
        (folder / "results.jsonl").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "artifacts"
        make_shards(root, args.instances, args.shards)
        times = []
        for n in range(args.repeat):
            start = time.perf_counter()
            result = aggregate([root], Path(tmp) / f"out{n}")
            times.append(time.perf_counter() - start)
        sizes = {f.name: f.stat().st_size for f in (Path(tmp) / "out0").iterdir()}
    assert result.report.totals.planned == args.instances
    print(f"aggregate {args.instances} instances in {args.shards} shards -> report.json, junit.xml, summary.md")
    print(f"median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f} ms over {args.repeat} runs")
    print("outputs: " + ", ".join(f"{name} {size / 1024:.0f} KiB" for name, size in sorted(sizes.items())))


if __name__ == "__main__":
    main()

"""Gold-patch grading throughput: ci-eval next to swebench's run_evaluation, same fixtures and
worker count, on the real Docker engine; and ci-eval's per-instance overhead (wall time outside
the eval script itself: container start, patch apply, copying, grading, bookkeeping).

    python benchmarks/grading_throughput.py [--workers 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "tests" / "fixtures" / "instances.jsonl"


def ci_eval(workers: int, work: Path) -> tuple[float, list[dict[str, dict[str, float]]]]:
    out = work / "ci-eval"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ci_eval", "shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES),
         "--predictions", "gold", "--sandbox", "docker", "--workers", str(workers), "--output", str(out)],
        check=True, capture_output=True,
    )
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "resolved" for r in records), "gold must resolve"
    return wall, records


def swebench(workers: int, work: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(INSTANCES),
         "--predictions_path", "gold", "--max_workers", str(workers), "--run_id", "bench",
         "--report_dir", str(work)],
        check=True, capture_output=True, cwd=work,
    )
    wall = time.perf_counter() - start
    report = json.loads(next(work.glob("gold.bench.json")).read_text())
    assert report["resolved_instances"] == report["total_instances"], "gold must resolve"
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    n = sum(1 for line in INSTANCES.read_text().splitlines() if line)

    ours, theirs, overheads, evals = [], [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            wall, records = ci_eval(args.workers, Path(tmp))
            ours.append(wall)
            overheads += [r["timings"]["total"] - r["timings"]["eval"] for r in records]
            evals += [r["timings"]["eval"] for r in records]
        with tempfile.TemporaryDirectory() as tmp:
            theirs.append(swebench(args.workers, Path(tmp)))

    print(f"gold grading of {n} fixture instances, {args.workers} workers, best of {args.repeat} runs")
    print(f"{'':28}{'wall s':>10}{'instances/min':>16}")
    for name, walls in (("ci-eval shard", ours), ("swebench run_evaluation", theirs)):
        best = min(walls)
        print(f"{name:28}{best:>10.1f}{n / best * 60:>16.1f}")
    print(f"ci-eval per-instance overhead outside the eval script: median {statistics.median(overheads):.2f} s, "
          f"max {max(overheads):.2f} s (eval script itself: median {statistics.median(evals):.2f} s)")


if __name__ == "__main__":
    main()

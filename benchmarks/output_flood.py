"""Peak memory of a shard whose instance floods its output: the test run prints PRINT bytes
(default 1 GB) before its tests, graded with the gold patch. Prints, per sandbox: what was
printed, what was kept on disk, the status, the wall time, and the shard process's peak RSS
(the target: under 300 MB).

    python benchmarks/output_flood.py [--print 1000000000] [--sandbox docker local]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "tests" / "fixtures" / "instances.jsonl"
REPOS = ROOT / "tests" / "fixtures" / "repos"


def flooding_dataset(work: Path, size: int) -> Path:
    row = json.loads(INSTANCES.read_text().splitlines()[0])
    flood = f"head -c {size} /dev/zero | tr '\\0' x"
    row["eval_script"] = row["eval_script"].replace("python3 -m pytest", f"{flood}\npython3 -m pytest", 1)
    path = work / "flood.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Run cmd as a child and return (seconds, its peak RSS in MB) from the kernel's accounting."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execvp(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed with {os.waitstatus_to_exitcode(status)}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print", dest="size", type=int, default=1_000_000_000)
    parser.add_argument("--sandbox", nargs="+", default=["docker", "local"])
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    print(f"{'sandbox':8} {'printed':>12} {'log kept':>10} {'status':>11} {'seconds':>8} {'peak RSS':>10}")
    for sandbox in args.sandbox:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            out = work / "out"
            cmd = [sys.executable, "-m", "ci_eval", "shard", "--index", "0", "--of", "1",
                   "--dataset", str(flooding_dataset(work, args.size)), "--predictions", "gold",
                   "--sandbox", sandbox, "--repos-dir", str(REPOS), "--output", str(out), "--eval-timeout", "900"]
            seconds, rss = peak_rss_mb(cmd)
            record = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
            log = next(out.rglob("test_output.txt"))
            print(f"{sandbox:8} {args.size:>12,} {log.stat().st_size:>10,} {record['status']:>11} "
                  f"{seconds:>8.1f} {rss:>7.0f} MB")


if __name__ == "__main__":
    main()

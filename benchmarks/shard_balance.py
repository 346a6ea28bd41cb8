"""Shard plans for a SWE-bench-Verified-shaped set: 500 instances in 80 repository+version
families (sizes like Verified's: django's versions 20-45 instances each, sympy's ~8, a long tail
of 1-5), costs drawn from Verified's difficulty mix. For 5, 10, 20 and 50 shards it prints the
image-family pulls against their lower bound (sum over families of ceil(cost / fair share)),
the plan's makespan against the ideal (total / shards), and a simulated run of each shard on W
workers with jobs in dataset order against most-expensive-first.

    python benchmarks/shard_balance.py [--workers 4]

Costs are ci-eval's difficulty prior in seconds (25 to 40 agent steps by difficulty: 33 to 51 minutes).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections import defaultdict
from typing import Any

from ci_eval.instances import Instance
from ci_eval.partition import balance, run_order, simulate

# (repository, instances per version): 80 families, 500 instances, Verified's shape.
FAMILIES = [
    ("django/django", [45, 40, 38, 36, 33, 30, 7]),
    ("sympy/sympy", [12, 11, 10, 9, 8, 8, 7, 5, 3, 2, 1]),
    ("sphinx-doc/sphinx", [6, 6, 5, 5, 4, 4, 4, 3, 3, 2, 1, 1]),
    ("matplotlib/matplotlib", [8, 7, 6, 5, 4, 2, 1, 1]),
    ("scikit-learn/scikit-learn", [9, 8, 7, 5, 3]),
    ("pydata/xarray", [5, 5, 4, 3, 2, 2, 1]),
    ("pytest-dev/pytest", [4, 4, 3, 3, 2, 1, 1, 1]),
    ("astropy/astropy", [6, 5, 4, 3, 2, 1, 1]),
    ("pylint-dev/pylint", [3, 2, 2, 1, 1, 1, 1]),
    ("psf/requests", [2, 2, 1, 1, 1, 1]),
    ("mwaskom/seaborn", [2]),
    ("pallets/flask", [1]),
]
DIFFICULTY = [("<15 min fix", 194), ("15 min - 1 hour", 261), ("1-4 hours", 42), (">4 hours", 3)]


def dataset(seed: int = 0) -> list[Instance]:
    rng = random.Random(seed)
    labels = [label for label, n in DIFFICULTY for _ in range(n)]
    rng.shuffle(labels)
    rows: list[Instance] = []
    for repo, sizes in FAMILIES:
        for v, size in enumerate(sizes):
            for k in range(size):
                rows.append(Instance.model_validate({
                    "instance_id": f"{repo.replace('/', '__')}-{v * 1000 + k}", "repo": repo, "base_commit": "0" * 40,
                    "problem_statement": "", "patch": "", "test_patch": "", "FAIL_TO_PASS": [], "PASS_TO_PASS": [],
                    "version": f"{v}.0", "image": "i", "eval_script": "", "log_parser": "parse_log_pytest",
                    "difficulty": labels[len(rows)],
                }))
    assert len(rows) == 500 and len({r.family for r in rows}) == 80
    return rows


def layer_pulls(order: list[str], cost: dict[str, float], family: dict[str, Any], workers: int) -> int:
    """How often a family's environment layers come onto the disk when the pool runs `order` as
    the Pool does: each instance's image pulled a wave ahead (the first 2 x workers at the start,
    then the one `workers` places past each job that starts), removed when its job ends; a
    family's layers are there while any of its images is, and come again after none was."""
    present: dict[Any, int] = defaultdict(int)
    pulled: set[int] = set()
    arrivals = 0

    def pull(k: int) -> None:
        nonlocal arrivals
        if k < len(order) and k not in pulled:
            pulled.add(k)
            arrivals += present[family[order[k]]] == 0
            present[family[order[k]]] += 1

    for k in range(2 * workers):
        pull(k)
    running: list[tuple[float, int]] = []  # (ends at, job)
    clock = 0.0
    for k, iid in enumerate(order):
        if len(running) == workers:  # the next job waits for a worker: the earliest one ends first
            clock, done = heapq.heappop(running)
            present[family[order[done]]] -= 1
        pull(k)
        pull(k + workers)
        heapq.heappush(running, (clock + cost[iid], k))
    return arrivals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    from ci_eval.partition import costs_for

    instances = dataset()
    cost = costs_for(instances)
    by_id = {i.instance_id: i for i in instances}
    family_cost: dict[tuple[str, str], float] = defaultdict(float)
    for inst in instances:
        family_cost[inst.family] += cost[inst.instance_id]
    total = sum(cost.values())
    family = {i.instance_id: i.family for i in instances}
    print(f"{'shards':>6} {'pulls':>6} {'bound':>6} {'ratio':>6} {'makespan/ideal':>15} "
          f"{'run, dataset order':>19} {'run, run_order':>15} {'layer pulls, costliest first':>29} "
          f"{'layer pulls, run_order':>23}")
    for of in (5, 10, 20, 50):
        shards = balance(instances, of, cost)
        fair = total / of
        pulls = sum(len({by_id[i].family for i in ids}) for ids in shards)
        bound = sum(math.ceil(c / fair - 1e-9) for c in family_cost.values())
        makespan = max(sum(cost[i] for i in ids) for ids in shards) / fair
        as_listed = max(simulate(ids, cost, args.workers) for ids in shards) / 3600
        ordered = [run_order(ids, cost, family) for ids in shards]
        in_order = max(simulate(ids, cost, args.workers) for ids in ordered) / 3600
        interleaved = [sorted(ids, key=lambda i: (-cost[i], i)) for ids in shards]  # the order before
        before = sum(layer_pulls(ids, cost, family, args.workers) for ids in interleaved)
        after = sum(layer_pulls(ids, cost, family, args.workers) for ids in ordered)
        print(f"{of:>6} {pulls:>6} {bound:>6} {pulls / bound:>6.2f} {makespan:>15.3f} "
              f"{as_listed:>17.2f} h {in_order:>13.2f} h {before:>29} {after:>23}")


if __name__ == "__main__":
    main()

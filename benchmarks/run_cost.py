"""What a run costs in runner minutes, by ci-eval's own pricing (the planner's difficulty prior at
the machine's seconds a step, `ci_eval/machine.py`), on a public repository's runner (4 vCPU,
16 GB: two workers) and a private one's (2 vCPU, 7 GB: one): the full Verified-shaped set of 500,
and a random sample of 60 as a pull request draws. Shard set-up (Ollama, the model, image pulls
outside the instances' own) is not counted: add about 5 minutes a shard.

    python benchmarks/run_cost.py

On GitHub Free a private repository has 2,000 minutes a month; a public repository's standard
runners cost nothing.
"""

from __future__ import annotations

import random

from shard_balance import dataset  # this folder: a script runs with it on the path

from ci_eval import machine, partition
from ci_eval.config import Settings


def main() -> None:
    rows = dataset()
    sample = random.Random(0).sample(rows, 60)
    memory = machine.gigabytes(Settings.model_fields["memory_limit"].default)
    print(f"{'runner':<28}{'workers':>8}{'s/step':>8}{'500: runner-hours':>19}{'60: runner-minutes':>20}")
    for name, spec in (("public (4 vCPU, 16 GB)", "4x16"), ("private (2 vCPU, 7 GB)", "2x7")):
        runner = machine.named(spec)
        workers = machine.workers_for(runner, memory, machine.MODEL_GB)
        step = machine.step_seconds(runner, workers)
        costs = partition.costs_for(rows, None, step)
        full = sum(costs.values()) / 3600 / workers
        pr = sum(costs[i.instance_id] for i in sample) / 60 / workers
        print(f"{name:<28}{workers:>8}{step:>8.0f}{full:>19.0f}{pr:>20.0f}")


if __name__ == "__main__":
    main()

"""Deterministic shard plans: which instance runs in which shard."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from ci_eval.errors import InputError
from ci_eval.instances import Instance

# Relative cost of SWE-bench Verified's difficulty labels (time a person needs to fix it).
# Harder issues mean longer agent runs, so it is a usable prior until real timings exist.
DIFFICULTY_COST = {"<15 min fix": 1.0, "15 min - 1 hour": 2.0, "1-4 hours": 4.0, ">4 hours": 8.0}

# A family (same repo and version: same environment image) stays in one shard unless that
# pushes the shard this far past its fair share of the expected time.
FAMILY_SLACK = 0.10


def plan(instances: Sequence[Instance], of: int, costs: Mapping[str, float] | None = None) -> list[list[str]]:
    """Split instances into `of` disjoint shards that together cover them all.

    Without costs the shards are contiguous runs of the sorted ids whose sizes differ by at
    most one. With costs they balance expected time instead, keeping families together.
    """
    if of < 1:
        raise InputError(f"--of must be at least 1, got {of}")
    ordered = sorted(instances, key=lambda i: i.instance_id)
    if not costs:
        return _by_count([i.instance_id for i in ordered], of)
    return _by_cost(ordered, of, costs)


def shard_ids(shards: list[list[str]], index: int) -> list[str]:
    if not 0 <= index < len(shards):
        raise InputError(f"shard index {index} is out of range: --of {len(shards)} has 0..{len(shards) - 1}")
    return shards[index]


def costs_for(instances: Sequence[Instance], timings: Path | None = None) -> dict[str, float]:
    """Expected cost per instance: a timings file (or an earlier run's report.json) if given,
    else the dataset's difficulty.

    Returns {} when there is no prior at all, which means "balance by count".
    """
    if timings is not None:
        try:
            data = json.loads(timings.read_text())
            if "instances" in data and "schema_version" in data:  # a ci-eval report.json: its measured times
                data = {iid: entry["time"] for iid, entry in data["instances"].items() if entry["time"] > 0}
            known = {str(k): float(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError, TypeError, KeyError) as exc:
            raise InputError(f"timings file {timings}: expected a report.json or a JSON object id -> seconds "
                             f"({exc})") from None
        if not known:
            return {}
        mean = sum(known.values()) / len(known)
        return {i.instance_id: known.get(i.instance_id, mean) for i in instances}
    if any(i.difficulty in DIFFICULTY_COST for i in instances):
        return {i.instance_id: DIFFICULTY_COST.get(i.difficulty or "", 2.0) for i in instances}
    return {}


def matrix(shards: list[list[str]]) -> dict[str, list[dict[str, int]]]:
    """The GitHub Actions matrix for a plan: one entry per shard."""
    of = len(shards)
    return {"include": [{"index": n, "of": of, "size": len(ids)} for n, ids in enumerate(shards)]}


def _by_count(ids: list[str], of: int) -> list[list[str]]:
    size, extra = divmod(len(ids), of)
    shards, start = [], 0
    for n in range(of):
        end = start + size + (1 if n < extra else 0)
        shards.append(ids[start:end])
        start = end
    return shards


def _by_cost(ordered: Sequence[Instance], of: int, costs: Mapping[str, float]) -> list[list[str]]:
    families: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for inst in ordered:
        families[inst.family].append(inst)
    cost = {i.instance_id: float(costs.get(i.instance_id, 1.0)) for i in ordered}
    limit = sum(cost.values()) / of * (1 + FAMILY_SLACK)

    loads = [0.0] * of
    shards: list[list[str]] = [[] for _ in range(of)]

    def lightest() -> int:  # ties go to the lowest index, so the plan is the same everywhere
        return min(range(of), key=lambda n: (loads[n], n))

    def put(n: int, inst: Instance) -> None:
        shards[n].append(inst.instance_id)
        loads[n] += cost[inst.instance_id]

    # Largest families first (longest-processing-time rule), whole where they fit.
    by_size = sorted(families.items(), key=lambda kv: (-sum(cost[i.instance_id] for i in kv[1]), kv[0]))
    for _, members in by_size:
        total = sum(cost[i.instance_id] for i in members)
        n = lightest()
        if loads[n] + total <= limit:
            for inst in members:
                put(n, inst)
            continue
        for inst in sorted(members, key=lambda i: (-cost[i.instance_id], i.instance_id)):
            put(lightest(), inst)
    return [sorted(ids) for ids in shards]

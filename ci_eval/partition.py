"""Which instance runs in which shard: deterministic, balanced shards, and the order inside a shard."""

from __future__ import annotations

import heapq
import json
import logging
import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ci_eval import machine
from ci_eval.errors import InputError, one_line
from ci_eval.instances import Instance

if TYPE_CHECKING:
    from ci_eval.contracts.report import Report

log = logging.getLogger(__name__)

# Expected seconds per instance, a prior until an earlier report's timings exist: model time is
# the whole cost on a CPU runner, so the agent's expected steps (more for harder issues, by
# SWE-bench Verified's difficulty label, up to the step limit of 40) times the seconds a step of
# granite4:tiny-h takes on ubuntu-latest with cache-friendly requests (~1k prompt tokens at
# ~60/s and ~250 generated at ~8/s: ~50 s, benchmarks/model_time.py) while the other worker's
# slot shares the cores (1.4x the time of a lone request, benchmarks/model_slots.py), plus
# the image pull and the tests.
# That is the reference machine's (4 vCPU, two slots); a plan prices steps on the machine it runs
# on (machine.step_seconds), or as an earlier report measured them.
STEP_SECONDS = machine.step_seconds(machine.REFERENCE, 2)  # 70 s
INSTANCE_OVERHEAD = 240.0
DIFFICULTY_STEPS = {"<15 min fix": 25, "15 min - 1 hour": 30, "1-4 hours": 35, ">4 hours": 40}
UNKNOWN_STEPS = 30
UNKNOWN_COST = UNKNOWN_STEPS * STEP_SECONDS + INSTANCE_OVERHEAD  # seconds, for an instance no prior knows
# What a shard job spends before its first instance: installing ci-eval, Ollama and the 4.2 GB
# model (a cache restore when warm), the first image pull.
SHARD_SETUP_MINUTES = 15.0

# A family (same repo and version: same environment image) stays in one shard unless that
# pushes the shard this far past its fair share of the expected time. 5% keeps the makespan
# within 1.05 of ideal at 5 to 50 shards with family pulls within 4% of their lower bound
# (benchmarks/shard_balance.py); 10% cost balance, 2-3% cost pulls.
FAMILY_SLACK = 0.05
# A timings prior that knows fewer than this share of the planned instances is mostly guesswork.
LOW_OVERLAP = 0.5


def balance(instances: Sequence[Instance], of: int, costs: Mapping[str, float] | None = None) -> list[list[str]]:
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


def costs_for(instances: Sequence[Instance], timings: Path | None = None,
              step: float = STEP_SECONDS) -> dict[str, float]:
    """Expected cost per instance: a timings file (or an earlier run's report.json) if given,
    else the dataset's difficulty at `step` seconds a step (the machine's).

    An instance the timings do not know gets, from a report that measured its agent's steps, its
    difficulty's steps at the report's measured seconds per step; else the timings' mean.
    Returns {} when there is no prior at all, which means "balance by count".
    """
    if timings is not None:
        known, measured = _read_timings(timings)
        ids = {i.instance_id for i in instances}
        mine = {iid: t for iid, t in known.items() if iid in ids}  # another dataset's times say nothing here
        if len(mine) < LOW_OVERLAP * len(ids):
            log.warning(f"timings file {timings} knows {len(mine)} of the {len(ids)} planned instances; "
                        "the rest get their mean")
        if not mine:
            return {}
        mean = sum(mine.values()) / len(mine)
        return {i.instance_id: mine.get(i.instance_id, mean if measured is None else default_cost(i, measured))
                for i in instances}
    if any(i.difficulty in DIFFICULTY_STEPS for i in instances):
        return {i.instance_id: default_cost(i, step) for i in instances}
    return {}


def default_cost(instance: Instance, step: float) -> float:
    """An instance's seconds from its difficulty's steps (UNKNOWN_STEPS without one) at `step` a step."""
    return DIFFICULTY_STEPS.get(instance.difficulty or "", UNKNOWN_STEPS) * step + INSTANCE_OVERHEAD


def measured_step(report: Report) -> float | None:
    """The median seconds an agent step took in an earlier run's report (its instances' time less
    the pull and the tests, over their steps); None where no instance took a step."""
    steps = sorted((e.time - INSTANCE_OVERHEAD) / e.steps for e in report.instances.values()
                   if e.steps > 0 and e.time > INSTANCE_OVERHEAD)
    return steps[len(steps) // 2] if steps else None


def shards_for_budget(instances: Sequence[Instance], costs: Mapping[str, float], minutes: float, slots: int,
                      most: int) -> int:
    """The fewest shards (at most `most`) whose every shard, run in `run_order` `slots` at a
    time, is expected to end within `minutes` after its setup; `most` when even that does not.
    For an agent run `slots` are the model's, not the workers: the model is the cost."""
    seconds = {i.instance_id: costs.get(i.instance_id, UNKNOWN_COST) for i in instances}
    family = {i.instance_id: i.family for i in instances}
    usable = max(minutes - SHARD_SETUP_MINUTES, 1.0) * 60
    start = max(1, math.ceil(sum(seconds.values()) / (usable * slots)))
    for of in range(min(start, most), most + 1):
        shards = balance(instances, of, seconds)
        if all(simulate(run_order(ids, seconds, family), seconds, slots) <= usable for ids in shards):
            return of
    return most


def simulate(ids: Sequence[str], costs: Mapping[str, float], workers: int) -> float:
    """When the last of `ids` ends on `workers` workers that take them in this order."""
    free = [0.0] * workers
    for iid in ids:
        heapq.heapreplace(free, free[0] + costs[iid])
    return max(free)


def run_order(ids: Sequence[str], costs: Mapping[str, float], family: Mapping[str, Hashable]) -> list[str]:
    """The order a shard runs its instances in: family by family, the costliest family first, and
    within a family the longest first (ties by family and id: the same everywhere).

    One family at a time keeps its environment layers on the disk from its first pull to its last
    use, since each image is removed after its own last job and the next image of the family is
    already pulled a wave ahead: each family is pulled once, as the plan counts. Interleaved
    costliest first, families left the disk between their instances and were pulled again (147
    layer pulls where the plan counted 80, at 10 shards of 2 workers: `benchmarks/shard_balance.py`). The costliest
    family first and the longest first within one keep long jobs from starting last.
    """
    total: dict[Hashable, float] = defaultdict(float)
    for iid in ids:
        total[family[iid]] += costs.get(iid, 0.0)
    return sorted(ids, key=lambda iid: (-total[family[iid]], str(family[iid]), -costs.get(iid, 0.0), iid))


def _read_timings(path: Path) -> tuple[dict[str, float], float | None]:
    """id -> seconds from a JSON object or an earlier run's report.json, and from a report its
    measured seconds per agent step; a time that is not a finite number of seconds >= 0 is
    refused, naming it."""
    step = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if "schema_version" in data:  # a ci-eval report.json, read through its contract: its measured times
            from ci_eval.contracts.report import Report

            report = Report.model_validate(data)
            data = {iid: entry.time for iid, entry in report.instances.items() if entry.time > 0}
            step = measured_step(report)
        known = {str(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError, KeyError) as exc:
        raise InputError(f"timings file {path}: expected a report.json or a JSON object id -> seconds "
                         f"({one_line(exc)})") from None
    bad = [iid for iid, t in known.items() if not math.isfinite(t) or t < 0]
    if bad:
        raise InputError(f"timings file {path}: {bad[0]} has {known[bad[0]]!r} seconds; times must be finite "
                         f"and not negative ({len(bad)} such)")
    return known, step



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
    """Balance expected time while pulling each family's image in as few shards as it needs.

    A family is cut into ceil(cost / fair share) pieces of about equal cost (one piece when it
    fits a shard), and the pieces go largest first to the lightest shard; a piece that would push
    that shard past FAMILY_SLACK over the fair share spills its smallest members to the next
    lightest. Every tie breaks on names, so the plan is the same on every machine.
    """
    families: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for inst in ordered:
        families[inst.family].append(inst)
    cost = {i.instance_id: float(costs.get(i.instance_id, 1.0)) for i in ordered}
    fair = sum(cost.values()) / of
    limit = fair * (1 + FAMILY_SLACK)

    pieces: list[list[Instance]] = []
    for _, members in sorted(families.items()):
        pieces += _cut(members, cost, math.ceil(sum(cost[i.instance_id] for i in members) / fair - 1e-9))
    pieces.sort(key=lambda piece: (-sum(cost[i.instance_id] for i in piece), piece[0].instance_id))

    loads = [0.0] * of
    shards: list[list[str]] = [[] for _ in range(of)]

    def lightest() -> int:
        return min(range(of), key=lambda n: (loads[n], n))

    for piece in pieces:
        rest = sorted(piece, key=lambda i: (-cost[i.instance_id], i.instance_id))
        while rest:
            n = lightest()
            take = list(rest)
            while len(take) > 1 and loads[n] + sum(cost[i.instance_id] for i in take) > limit:
                take.pop()  # the smallest member spills to the next lightest shard
            for inst in take:
                shards[n].append(inst.instance_id)
                loads[n] += cost[inst.instance_id]
            rest = rest[len(take):]
    _even_out(shards, loads, cost, {i.instance_id: i.family for i in ordered}, limit)
    return [sorted(ids) for ids in shards]


def _even_out(shards: list[list[str]], loads: list[float], cost: Mapping[str, float],
              family: Mapping[str, tuple[str, str]], limit: float) -> None:
    """While the heaviest shard is past the limit, move one instance from it to the lightest:
    one whose family the lightest already pulls if any, else the one that evens them out best."""
    for _ in range(sum(len(ids) for ids in shards)):
        hi = max(range(len(shards)), key=lambda n: (loads[n], -n))
        lo = min(range(len(shards)), key=lambda n: (loads[n], n))
        gap = loads[hi] - loads[lo]
        if loads[hi] <= limit or gap <= 0:
            return
        present = {family[i] for i in shards[lo]}
        movable = [i for i in shards[hi] if cost[i] < gap]  # moving it lowers the maximum
        if not movable:
            return
        pick = min(movable, key=lambda i: (family[i] not in present, abs(cost[i] - gap / 2), i))
        shards[hi].remove(pick)
        shards[lo].append(pick)
        loads[hi] -= cost[pick]
        loads[lo] += cost[pick]


def _cut(members: list[Instance], cost: Mapping[str, float], pieces: int) -> list[list[Instance]]:
    """A family in `pieces` parts of about equal cost (largest member to the lightest part)."""
    if pieces <= 1:
        return [members]
    parts: list[list[Instance]] = [[] for _ in range(pieces)]
    loads = [0.0] * pieces
    for inst in sorted(members, key=lambda i: (-cost[i.instance_id], i.instance_id)):
        n = min(range(pieces), key=lambda k: (loads[k], k))
        parts[n].append(inst)
        loads[n] += cost[inst.instance_id]
    return [part for part in parts if part]

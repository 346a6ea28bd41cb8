"""Which instances a sample takes: at random, or where a baseline history says outcomes vary.

The informative sample is stratified by that history: instances it resolved at least once, those
it never resolved, and those it never tried. Each stratum h of N_h instances gets n_h of the sample
in proportion to N_h * sigma_h (Neyman's allocation), sigma_h^2 the mean r/n (1 - r/n) of its
instances, with a floor so that every stratum is sampled. Within a stratum the instances are
ordered by repository, then by a hash of the seed and the id, and taken at even steps from a
start the seed chooses: every repository gets its share, and the same seed and history choose
the same instances on every machine. The design (N_h and the chosen ids) goes into the plan and
on to the report, which estimates the full set's change from it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from ci_eval.contracts.plan import SampleDesign, Stratum
from ci_eval.history import Tries
from ci_eval.instances import Instance

# Of the sample, at least, for every stratum (as far as it has instances). Small: the gate's null
# keeps the choice, so a never-resolved instance can only tell the full-set estimate something.
FLOOR_SHARE = 0.05
EVER, NEVER, UNTRIED = "resolved at least once", "never resolved", "never tried"


def whole(chosen: Sequence[Instance]) -> SampleDesign:
    ids = [i.instance_id for i in chosen]
    return SampleDesign(kind="all", population=len(ids), strata=[Stratum(name="all", population=max(len(ids), 1),
                                                                            chosen=ids)])


def at_random(chosen: Sequence[Instance], population: int, seed: int) -> SampleDesign:
    return SampleDesign(kind="random", seed=seed, population=population,
                        strata=[Stratum(name="all", population=population, chosen=[i.instance_id for i in chosen])])


def informative(instances: Sequence[Instance], history: Mapping[str, Tries], size: int, seed: int,
                runs: int) -> tuple[list[Instance], SampleDesign]:
    """`size` of the instances, stratified by their history (dataset order kept)."""
    groups: dict[str, list[Instance]] = {EVER: [], NEVER: [], UNTRIED: []}
    for inst in instances:
        t = history.get(inst.instance_id)
        groups[UNTRIED if t is None or not t.tries else EVER if t.resolved else NEVER].append(inst)
    groups = {name: members for name, members in groups.items() if members}
    # Never-tried instances (new in the dataset) have nothing to be compared with: none is drawn,
    # and their stratum, kept for its size, carries no value to the full-set estimate.
    tried = {name: members for name, members in groups.items() if name != UNTRIED}
    sds = {name: _spread([history[i.instance_id] for i in members]) for name, members in tried.items()}
    sizes = {**allocate({name: len(m) for name, m in tried.items()}, sds, size), UNTRIED: 0}
    strata, keep = [], set()
    for name, members in groups.items():
        picked = _spaced(members, sizes[name], f"{seed}:{name}")
        keep |= set(picked)
        strata.append(Stratum(name=name, population=len(members), chosen=picked, sd=round(sds.get(name, 0.0), 4),
                              weight=round(len(members) / len(instances), 6)))
    chosen = [i for i in instances if i.instance_id in keep]
    return chosen, SampleDesign(kind="informative", seed=seed, population=len(instances), strata=strata,
                                baseline_runs=runs)


def allocate(sizes: Mapping[str, int], sds: Mapping[str, float], total: int) -> dict[str, int]:
    """n_h proportional to N_h * sigma_h, each at least the floor and at most N_h (units given one
    at a time to the stratum furthest below its share: the largest-remainder result, exactly)."""
    floor = max(1, math.floor(FLOOR_SHARE * total))
    out = {h: min(n, floor) for h, n in sizes.items()}
    weight = {h: sizes[h] * sds[h] for h in sizes}
    while sum(out.values()) < min(total, sum(sizes.values())):
        open_ = [h for h in sizes if out[h] < sizes[h]]
        if not any(weight[h] for h in open_):  # no spread left where there is room: by size
            weight = {h: float(sizes[h]) for h in sizes}
        best = max(open_, key=lambda h: (weight[h] / (out[h] + 1), h))
        out[best] += 1
    return out


def _spread(tries: Sequence[Tries]) -> float:
    """sigma: the root of the mean r/n (1 - r/n)."""
    seen = [t.resolved / t.tries for t in tries if t.tries]
    return math.sqrt(sum(p * (1 - p) for p in seen) / len(seen)) if seen else 0.5


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _spaced(members: Sequence[Instance], n: int, key: str) -> list[str]:
    """n of the members at even steps through them ordered by repository: each repository's share."""
    if n >= len(members):
        return sorted(i.instance_id for i in members)
    if n <= 0:
        return []
    ordered = sorted(members, key=lambda i: (i.repo, _digest(f"{key}:{i.instance_id}")))
    step = len(ordered) / n
    start = int(_digest(key)[:8], 16) / 16**8 * step
    return sorted(ordered[int(start + j * step)].instance_id for j in range(n))

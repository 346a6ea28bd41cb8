"""The plan made once: the plan job writes it, every shard job runs from it, so no shard
reloads (or re-plans) the dataset and all of them agree on what they run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_eval.config import Settings
from ci_eval.errors import InputError, one_line
from ci_eval.instances import Instance, fingerprint, load_instances, select, subset
from ci_eval.partition import costs_for, plan, shards_for_budget

PLAN_VERSION = 1
MATRIX_LIMIT = 256  # GitHub runs at most this many jobs from one matrix


@dataclass(frozen=True)
class Plan:
    dataset: str
    split: str
    revision: str | None
    fingerprint: str  # of the whole dataset the instances were chosen from
    instances: list[Instance]  # the chosen ones, in dataset order
    shards: list[list[str]]
    costs: dict[str, float]

    @property
    def of(self) -> int:
        return len(self.shards)


def make_plan(settings: Settings, of: int, timings: Path | None = None) -> Plan:
    dataset = load_instances(settings.dataset, settings.split, settings.revision)
    chosen = choose(dataset, settings)
    most = min(len(chosen), MATRIX_LIMIT)
    if not 1 <= of <= most:
        raise InputError(f"--of {of} is out of range: 1 to {most} (one shard per instance at most, and "
                         f"GitHub runs at most {MATRIX_LIMIT} jobs of a matrix)")
    costs = costs_for(chosen, timings)
    return Plan(settings.dataset, settings.split, settings.revision, fingerprint(dataset), chosen,
                plan(chosen, of, costs), costs)


def choose_shards(settings: Settings, minutes: float, workers: int, timings: Path | None = None) -> int:
    """The fewest shards expected to end within `minutes` each on `workers` workers."""
    chosen = choose(load_instances(settings.dataset, settings.split, settings.revision), settings)
    return shards_for_budget(chosen, costs_for(chosen, timings), minutes, workers, min(len(chosen), MATRIX_LIMIT))


def choose(dataset: list[Instance], settings: Settings) -> list[Instance]:
    """--instance-ids, then --filter, then --sample-size with --sample-seed."""
    return subset(select(dataset, settings.instance_ids), settings.filter, settings.sample_size, settings.sample_seed)


def write_plan(path: Path, p: Plan) -> None:
    data = {"plan_version": PLAN_VERSION, "dataset": p.dataset, "split": p.split, "revision": p.revision,
            "dataset_fingerprint": p.fingerprint,
            "of": p.of, "shards": p.shards, "costs": p.costs,
            "instances": [inst.model_dump(mode="json") for inst in p.instances]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")


def read_plan(path: Path) -> Plan:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if data.get("plan_version") != PLAN_VERSION:
            raise ValueError(f"plan_version is {data.get('plan_version')!r}, not {PLAN_VERSION}")
        instances = [Instance.model_validate(row) for row in data["instances"]]
        revision = data.get("revision")
        result = Plan(str(data["dataset"]), str(data["split"]), None if revision is None else str(revision),
                      str(data["dataset_fingerprint"]), instances,
                      [[str(i) for i in ids] for ids in data["shards"]],
                      {str(k): float(v) for k, v in data["costs"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is not a ci-eval plan ({one_line(exc)}); make it with ci-eval plan --output") \
            from None
    known = {inst.instance_id for inst in result.instances}
    if sorted(i for ids in result.shards for i in ids) != sorted(known):
        raise InputError(f"{path}: its shards do not cover its instances exactly once; make it again")
    return result

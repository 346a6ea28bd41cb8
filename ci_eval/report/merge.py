"""Merge the shard runs of one run, however download-artifact laid them out, into one set of
results: pure, from what `shard_folder.find_shards` read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ci_eval.contracts.plan import SampleDesign
from ci_eval.contracts.shard import Manifest, Record, UnreadableLine
from ci_eval.errors import InputError
from ci_eval.shard_folder import ShardRun


@dataclass
class Merged:
    identity: dict[str, Any]
    plan: list[list[str]]
    epochs: int
    shards: dict[int, ShardRun]  # the newest attempt of each shard that arrived
    missing: list[int]
    records: dict[tuple[str, int], Record]
    warnings: list[str] = field(default_factory=list)
    unreadable: list[UnreadableLine] = field(default_factory=list)
    log_tails: dict[str, str] = field(default_factory=dict)  # instance id -> the end of its failing log
    sample: SampleDesign | None = None  # how the plan drew its instances
    environment: dict[str, str | None] = field(default_factory=dict)  # what the first shard's server said

    @property
    def of(self) -> int:
        return len(self.plan)

    @property
    def planned(self) -> list[str]:
        return [iid for ids in self.plan for iid in ids]


def merge(runs: list[ShardRun], allow_partial: bool = False) -> Merged:
    set_aside = [f"not taken: {run.refused}" for run in runs if run.refused]
    runs = [run for run in runs if not run.refused]
    if not runs:
        raise InputError("no shard results found (no manifest.json below the given folders)")
    first = runs[0]
    for run in runs[1:]:
        same_run(first.manifest, run.manifest, first.folder, run.folder)

    newest: dict[int, ShardRun] = {}
    for run in runs:  # a re-run's newer attempt replaces the older; shards not re-run stay
        kept = newest.get(run.index)
        if kept is None or (run.run_attempt, run.manifest.written_at) > (kept.run_attempt, kept.manifest.written_at):
            newest[run.index] = run

    plan = first.manifest.plan
    missing = [n for n in range(len(plan)) if n not in newest]
    warnings = set_aside
    if missing:
        names = ", ".join(str(n) for n in missing)
        if not allow_partial:
            raise InputError(
                f"missing shard(s) {names} of {len(plan)}; wait for them, or pass --allow-partial "
                "to count their instances as not attempted"
            )
        warnings.append(f"shard(s) {names} of {len(plan)} missing: their instances count as not attempted")

    records: dict[tuple[str, int], Record] = {}
    log_tails: dict[str, str] = {}
    seen_in: dict[str, list[int]] = {}
    for index, run in sorted(newest.items()):
        own = set(plan[index])
        for key, record in run.records.items():
            seen_in.setdefault(record.instance_id, [])
            if index not in seen_in[record.instance_id]:
                seen_in[record.instance_id].append(index)
            if record.instance_id in own:
                records[key] = record
                if record.instance_id in run.log_tails:
                    log_tails[record.instance_id] = run.log_tails[record.instance_id]
    for iid, shards in sorted(seen_in.items()):
        if len(shards) > 1:
            warnings.append(f"duplicate instance {iid} in shards {', '.join(map(str, shards))}: "
                            "kept the result of the shard that planned it")
    unreadable = [u for _, run in sorted(newest.items()) for u in run.unreadable]
    warnings += [f"could not read {u}" for u in unreadable]
    return Merged(first.manifest.identity, plan, first.manifest.epochs, newest, missing, records, warnings,
                  unreadable, log_tails, first.manifest.sample, first.manifest.environment)


def same_run(a: Manifest, b: Manifest, where_a: object, where_b: object) -> None:
    """The one check that two shards belong to one run: same identity, same plan."""
    for key in sorted(set(a.identity) | set(b.identity)):
        va, vb = a.identity.get(key), b.identity.get(key)
        if va != vb and key == "config_hash":  # name the setting: a hash alone says nothing to act on
            names = sorted(n for n in set(a.config) | set(b.config) if a.config.get(n) != b.config.get(n))
            if names:
                key, va, vb = f"setting {names[0]}", a.config.get(names[0]), b.config.get(names[0])
        if va != vb:
            raise InputError(f"shards are from different runs: {key} is {va!r} in {where_a} but {vb!r} in {where_b}; "
                             "aggregate the shards of one configuration at a time")
    if a.plan != b.plan:
        raise InputError(f"shards {where_a} and {where_b} were planned differently (another --of or instance set)")
    if a.sample != b.sample:  # the design weighs the verdict: no shard may bring its own
        raise InputError(f"shards {where_a} and {where_b} carry different sample designs; "
                         "aggregate the shards of one plan at a time")

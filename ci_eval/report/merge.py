"""Merge shard folders, however download-artifact laid them out, into one set of results."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_eval.contracts import Manifest, Record, SampleDesign, UnreadableLine, read_manifest, same_run
from ci_eval.errors import InputError
from ci_eval.github import in_actions, run_attempt
from ci_eval.layout import MANIFEST, RESULTS, unlinked
from ci_eval.results import scan_records


@dataclass
class ShardRun:
    folder: Path
    manifest: Manifest
    records: dict[tuple[str, int], Record]
    unreadable: list[UnreadableLine] = field(default_factory=list)
    refused: str = ""  # why this folder is not taken as the shard it claims to be
    artifact: Path | None = None  # the artifact's folder (the first below the root), when named as one

    @property
    def index(self) -> int:
        return self.manifest.shard.index

    @property
    def run_attempt(self) -> int:
        return self.manifest.shard.run_attempt


@dataclass
class Merged:
    identity: dict[str, Any]
    plan: list[list[str]]
    samples: int
    shards: dict[int, ShardRun]  # the newest attempt of each shard that arrived
    missing: list[int]
    records: dict[tuple[str, int], Record]
    warnings: list[str] = field(default_factory=list)
    unreadable: list[UnreadableLine] = field(default_factory=list)
    folders: dict[str, Path] = field(default_factory=dict)  # instance id -> the shard folder holding its logs
    sample: SampleDesign | None = None  # how the plan drew its instances
    environment: dict[str, str | None] = field(default_factory=dict)  # what the first shard's server said

    @property
    def of(self) -> int:
        return len(self.plan)

    @property
    def planned(self) -> list[str]:
        return [iid for ids in self.plan for iid in ids]


# What paths.sh and the shard action name a shard's folder and artifact.
NAMED = re.compile(r"(?:.+-)?shard-(\d+)-attempt-(\d+)")


def find_shards(paths: Iterable[Path]) -> list[ShardRun]:
    """Every shard folder below the paths: one folder per artifact, or all merged into one."""
    runs = []
    for root in paths:
        if not root.exists():
            raise InputError(f"{root} does not exist")
        for manifest in sorted(root.rglob(MANIFEST)):
            if not unlinked(root, manifest):
                continue
            data = read_manifest(manifest)
            records, unreadable = scan_records(manifest.parent / RESULTS)
            # a line stamped by another run (its folder reused) is not this shard's result
            own = data.identity.get("config_hash")
            records = [r for r in records if r.run is None or r.run == own]
            parts = manifest.parent.relative_to(root).parts
            artifact = root / parts[0] if parts and NAMED.fullmatch(parts[0]) else None
            runs.append(ShardRun(manifest.parent, data, {r.key: r for r in records}, unreadable,
                                 _refusal(root, manifest.parent, data), artifact))
    return _one_per_artifact(runs)


def _refusal(root: Path, folder: Path, manifest: Manifest) -> str:
    """Why a folder is not the shard its manifest claims: the artifact's or the folder's name
    names another shard or attempt, or the attempt is later than this workflow run's."""
    shard = manifest.shard
    for name in {*folder.relative_to(root).parts, folder.name}:
        match = NAMED.fullmatch(name)
        if match and (int(match[1]), int(match[2])) != (shard.index, shard.run_attempt):
            return f"{folder} holds the manifest of shard {shard.index} attempt {shard.run_attempt}, but lies in {name}"
    if in_actions() and shard.run_attempt > run_attempt():
        return (f"{folder} claims attempt {shard.run_attempt} of shard {shard.index}; this run is at attempt "
                f"{run_attempt()}")
    return ""


def _one_per_artifact(runs: list[ShardRun]) -> list[ShardRun]:
    """An artifact holds one shard: a second manifest in it is not taken (the first, by path, is)."""
    seen: dict[Path, ShardRun] = {}
    for run in sorted(runs, key=lambda r: (len(r.folder.parts), str(r.folder))):  # the shallowest first
        artifact = run.artifact
        if artifact is None or run.refused:
            continue
        if artifact in seen:
            run.refused = f"{run.folder} is a second shard folder in the artifact {artifact.name}"
        else:
            seen[artifact] = run
    return runs


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
    folders: dict[str, Path] = {}
    seen_in: dict[str, list[int]] = {}
    for index, run in sorted(newest.items()):
        own = set(plan[index])
        for key, record in run.records.items():
            seen_in.setdefault(record.instance_id, [])
            if index not in seen_in[record.instance_id]:
                seen_in[record.instance_id].append(index)
            if record.instance_id in own:
                records[key] = record
                folders[record.instance_id] = run.folder
    for iid, shards in sorted(seen_in.items()):
        if len(shards) > 1:
            warnings.append(f"duplicate instance {iid} in shards {', '.join(map(str, shards))}: "
                            "kept the result of the shard that planned it")
    unreadable = [u for _, run in sorted(newest.items()) for u in run.unreadable]
    warnings += [f"could not read {u}" for u in unreadable]
    samples = first.manifest.samples
    return Merged(first.manifest.identity, plan, samples, newest, missing, records, warnings, unreadable, folders,
                  first.manifest.sample, first.manifest.environment)

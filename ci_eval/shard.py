"""One shard end to end, as wiring: plan (or read the plan), pick the solver and the sandbox,
write the manifest, run the pool."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ci_eval import __version__, solver
from ci_eval.config import Settings
from ci_eval.contracts import Manifest, Plan, read_plan
from ci_eval.errors import InputError
from ci_eval.github import run_attempt
from ci_eval.instances import Instance
from ci_eval.model import OpenAIModel
from ci_eval.partition import costliest_first, shard_ids
from ci_eval.planfile import gradable, make_plan
from ci_eval.progress import Display, display
from ci_eval.results import NOT_ATTEMPTED, Record, ResultStore, now, only_writer, write_manifest
from ci_eval.runner import Limits, ModelGate, pending_jobs, run_jobs, until_signal
from ci_eval.sandbox import Backend
from ci_eval.sandbox.choose import choose_backend
from ci_eval.sandbox.local import LocalBackend
from ci_eval.solver import Job, Solver

log = logging.getLogger(__name__)


@dataclass
class ShardResult:
    folder: Path
    records: dict[tuple[str, int], Record]
    ran: int
    planned: int  # instances x samples
    stopped: str = ""  # why, if the shard stopped before its end

    @property
    def unfinished(self) -> int:
        """Jobs the deadline stopped or never started: the next run of the shard does them."""
        return self.planned - sum(r.status != NOT_ATTEMPTED for r in self.records.values())

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.status for r in self.records.values())

    @property
    def infra_failures(self) -> int:
        return sum(r.is_infra_failure for r in self.records.values())


def writable(folder: Path) -> None:
    """The shard folder exists and takes files, or a one-line error before any work."""
    probe = folder / ".ci-eval-write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to --output {folder} ({exc.strerror}); choose a folder you can write") from None


def run_shard(settings: Settings, index: int, of: int | None = None, timings: Path | None = None,
              plan_file: Path | None = None) -> ShardResult:
    """Plan (or read the plan job's plan), then run shard `index` of it, costliest first."""
    began = time.monotonic()  # --deadline-minutes counts from here
    if plan_file is not None:
        made = read_plan(plan_file)
        if of is not None and of != made.of:
            raise InputError(f"--of {of} but {plan_file} has {made.of} shards; leave --of out with --plan")
        # The plan names the data: the shards' identity must say the same whatever the settings say.
        settings = settings.model_copy(update={"dataset": made.dataset, "split": made.split,
                                               "revision": made.revision})
    elif of is None:
        raise InputError("give --of N (or --plan FILE from ci-eval plan --output)")
    else:
        made = make_plan(settings, of, timings)
    by_id = {inst.instance_id: inst for inst in made.instances}
    planned = [by_id[iid] for iid in costliest_first(shard_ids(made.shards, index), made.costs)]
    gradable(planned)  # a plan file made by an older ci-eval may hold rows that cannot be graded
    folder = settings.output or Path("ci-eval-results") / f"shard-{index}"
    writable(folder)
    with only_writer(folder):
        return _serve_and_run(settings, made, index, planned, folder, began)


def _serve_and_run(settings: Settings, made: Plan, index: int, planned: Sequence[Instance], folder: Path,
                   began: float) -> ShardResult:
    if settings.local_model and settings.predictions is None:
        from ci_eval import llama_server

        with llama_server.serve(settings.context_window, folder / "local-model.log") as url:
            # Gemma's chat format drops system messages: the system prompt goes into the first user turn.
            local = settings.model_copy(update={"base_url": url, "model": llama_server.MODEL_ALIAS,
                                                "fold_system_prompt": True})
            return _run_shard(local, made, index, planned, folder, began)
    return _run_shard(settings, made, index, planned, folder, began)


def _run_shard(settings: Settings, made: Plan, index: int, planned: Sequence[Instance], folder: Path,
               began: float) -> ShardResult:
    model = OpenAIModel(settings) if settings.predictions is None else None
    solve = solver.for_settings(settings, planned, model)
    backend = choose_backend(settings.sandbox, planned, owner_of(folder), repos_dir=settings.repos_dir,
                             dataset=settings.dataset, memory_limit=settings.memory_limit,
                             pids_limit=settings.pids_limit)
    settings = _safe_for(settings, backend)
    write_manifest(folder, manifest(settings, made, index, backend.name))
    store = ResultStore(folder, settings.config_hash())
    done, set_aside = store.resume()
    if set_aside:
        log.info(f"set aside {set_aside} result line(s) of another run in {folder}: their instances run again")
    jobs = pending_jobs(planned, settings.samples, done, settings.max_attempts)
    total = len(planned) * settings.samples
    log.info(f"shard {index}/{made.of}: {len(planned)} instances, {len(jobs)} to run, "
         f"{backend.name} sandbox, {settings.workers} workers, results in {folder}")
    deadline = None if settings.deadline_minutes is None else began + settings.deadline_minutes * 60
    limits = Limits(settings.instance_time_limit(), settings.eval_timeout, deadline, settings.max_attempts)
    gate = ModelGate(None if model is None else lambda: model.wait_until_up(settings.model_down_minutes))
    show = display(total, total - len(jobs))
    try:
        asyncio.run(until_signal(_run(jobs, backend, solve, model, store, folder, settings, limits, show, gate)))
    finally:
        show.close()
        store.close()
    stopped = f"the model server stayed down past --model-down-minutes {settings.model_down_minutes:g}" \
        if gate.gone else "--deadline-minutes passed"
    return ShardResult(folder, store.latest(), len(jobs), total, stopped)


async def _run(jobs: Sequence[Job], backend: Backend, solve: Solver, model: OpenAIModel | None,
               store: ResultStore, folder: Path, settings: Settings, limits: Limits, show: Display,
               gate: ModelGate) -> None:
    try:
        if model is not None and jobs:
            await model.check()  # a server that is down is one clear line before any work
        await run_jobs(
            jobs, backend=backend, solve=solve, store=store, root=folder,
            limits=limits, workers=settings.workers,
            show=show, prune=settings.prune_images, gate=gate,
        )
    finally:
        await backend.close()
        if model is not None:
            await model.close()


def _safe_for(settings: Settings, backend: Backend) -> Settings:
    """An agent in a local sandbox that nothing isolates (not root, not Linux) could read the
    key and the CI token from ci-eval's process and share /tmp with its neighbours: refused where
    there is a secret, else run one instance at a time."""
    if settings.predictions is not None or not isinstance(backend, LocalBackend) or backend.isolated:
        return settings
    if settings.api_key.get_secret_value() or os.environ.get("GITHUB_ACTIONS"):
        raise InputError("the local sandbox cannot isolate an agent here (it needs Linux and root), and an API key "
                         "or a CI token would be readable from its commands; use --sandbox docker")
    if settings.workers > 1:
        log.warning("the local sandbox cannot isolate agents here (it needs Linux and root): one instance at a time, "
            "since they would share /tmp")
        return settings.model_copy(update={"workers": 1})
    return settings


def manifest(settings: Settings, made: Plan, index: int, sandbox: str) -> Manifest:
    """The shard's identity; the whole plan rides along so that aggregation can name the
    instances of a shard whose artifact never arrived."""
    return Manifest.model_validate({
        "identity": {
            "ci_eval_version": __version__,
            "model": settings.model if settings.predictions is None else f"predictions:{settings.predictions}",
            "base_url": settings.identity()["base_url"] if settings.predictions is None else None,
            "dataset": settings.dataset,
            "split": settings.split,
            "dataset_fingerprint": made.dataset_fingerprint,
            "config_hash": settings.config_hash(),
            # what the agent could reach: a run with the network is not comparable with one without
            "agent_network": settings.agent_network if settings.predictions is None else None,
        },
        "config": settings.identity(),
        "shard": {"index": index, "of": made.of, "attempt": run_attempt()},
        "sandbox": sandbox,
        "samples": settings.samples,
        "planned": made.shards[index],
        "plan": made.shards,
        "written_at": now(),
    })


def owner_of(folder: Path) -> str:
    """The label value of the containers this shard folder's runs make."""
    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]


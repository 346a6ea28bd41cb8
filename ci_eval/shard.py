"""One shard end to end, and the one place where settings become parts (`planfile.py` does it
for the plan alone): plan or read the plan, resolve the one Settings the shard runs with, make
the sandbox backend, the model client and the solver from it, write the manifest, run the pool.
Below this file nothing reads the settings: every part takes what it needs as arguments."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ci_eval import __version__, attempt, llama_server, predictions
from ci_eval.agent_config import PACKAGED, AgentConfig, read_agent_config
from ci_eval.attempt import Agent, AgentLimits, Options
from ci_eval.config import DEFAULT_AGENT, Settings, digest
from ci_eval.contracts.plan import Plan
from ci_eval.contracts.shard import Manifest, Record
from ci_eval.contracts.status import Status
from ci_eval.errors import InputError, first_error
from ci_eval.github import in_actions, run_attempt
from ci_eval.instances import Instance, allowed_images
from ci_eval.model import RETRIES, OpenAIModel, describe_server
from ci_eval.partition import run_order, shard_ids
from ci_eval.planfile import gradable, make_plan, read_plan
from ci_eval.pool import Clocks, ModelGate, Pool, pending_jobs, until_signal
from ci_eval.progress import display, heartbeat
from ci_eval.sandbox import Backend
from ci_eval.sandbox.choose import choose_backend
from ci_eval.shard_folder import (
    LOCAL_MODEL_LOG,
    WRITE_PROBE,
    ResultStore,
    default_folder,
    now,
    only_writer,
    write_manifest,
)
from ci_eval.solver import Job, Solver

log = logging.getLogger(__name__)
COMMAND_AGENT = "ci_eval.command:command_agent"


@dataclass
class ShardResult:
    folder: Path
    records: dict[tuple[str, int], Record]
    ran: int
    planned: int  # instances x epochs
    stopped: str = ""  # why, if the shard stopped before its end

    @property
    def unfinished(self) -> int:
        """Jobs the deadline stopped or never started: the next run of the shard does them."""
        return self.planned - sum(r.status != Status.NOT_ATTEMPTED for r in self.records.values())

    @property
    def counts(self) -> Counter[Status]:
        return Counter(r.status for r in self.records.values())

    @property
    def infra_failures(self) -> int:
        return sum(r.is_infra_failure for r in self.records.values())


def writable(folder: Path) -> None:
    """The shard folder exists and takes files, or a one-line error before any work."""
    probe = folder / WRITE_PROBE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to --output {folder} ({exc.strerror}); choose a folder you can write") from None


def run_shard(settings: Settings, index: int, of: int | None = None, timings: Path | None = None,
              plan_file: Path | None = None) -> ShardResult:
    """Plan (or read the plan job's plan), then run shard `index` of it, family by family."""
    began = time.monotonic()  # --deadline-minutes counts from here
    plan = _the_plan(settings, of, timings, plan_file)
    by_id = {inst.instance_id: inst for inst in plan.instances}
    family = {iid: inst.family for iid, inst in by_id.items()}
    planned = [by_id[iid] for iid in run_order(shard_ids(plan.shards, index), plan.costs, family)]
    gradable(planned)  # a plan file made by an older ci-eval may hold rows that cannot be graded
    # a plan file is an artifact: its rows are checked again
    allowed_images(planned, settings.image_pattern, settings.image_template)
    agent_config = PACKAGED if settings.agent_config is None else read_agent_config(settings.agent_config)
    folder = settings.output or default_folder(index)
    writable(folder)
    with only_writer(folder), served(settings, folder) as url:
        backend = choose_backend(settings.sandbox, planned, owner_of(folder), repos_dir=settings.repos_dir,
                                 dataset=plan.dataset, memory_limit=settings.memory_limit,
                                 pids_limit=settings.pids_limit)
        resolved = resolve(settings, plan, agent_config, url, backend)
        return _run_shard(resolved, agent_config, plan, index, planned, folder, backend, began)


def _the_plan(settings: Settings, of: int | None, timings: Path | None, plan_file: Path | None) -> Plan:
    if plan_file is None:
        if of is None:
            raise InputError("give --of N (or --plan FILE from ci-eval plan --output)")
        return make_plan(settings, of, timings)
    plan = read_plan(plan_file)
    if of is not None and of != plan.of:
        raise InputError(f"--of {of} but {plan_file} has {plan.of} shards; leave --of out with --plan")
    return plan


def resolve(settings: Settings, plan: Plan, agent_config: AgentConfig, served_url: str | None,
            backend: Backend) -> Settings:
    """The one Settings a shard runs with, validated: the manifest, the store and every part take
    it. Over what was given: the plan's data (its identity says what was graded, whatever the
    settings say), the agent config's limits under the flags and variables (which win), the
    local model's address when ci-eval serves it, the limits derived from the step limit where
    none is set, and one worker in a local sandbox that cannot
    isolate (refused outright where there is a secret to read)."""
    given = settings.model_fields_set
    update: dict[str, Any] = {"dataset": plan.dataset, "split": plan.split, "revision": plan.revision}
    update |= {k: v for k, v in agent_config.limits.model_dump(exclude_none=True).items() if k not in given}
    if served_url is not None:
        # Gemma's chat format drops system messages: the system prompt goes into the first user turn.
        update |= {"base_url": served_url, "model": llama_server.MODEL_ALIAS, "fold_system_prompt": True}
    if settings.predictions is None and not backend.isolated:
        if settings.api_key.get_secret_value() or in_actions():
            raise InputError("the local sandbox cannot isolate an agent here (it needs Linux, root and bubblewrap), "
                             "and an API key or a CI token would be readable from its commands; use --sandbox docker")
        if settings.workers > 1:
            log.warning("the local sandbox cannot isolate agents here (it needs Linux, root and bubblewrap): one "
                        "instance at a time, since they would share /tmp")
            update["workers"] = 1
    try:
        return Settings.model_validate({**settings.model_dump(), **update}).with_derived_limits()
    except ValidationError as exc:
        where, what = first_error(exc)
        raise InputError(f"bad setting {where!r}: {what}") from None


@contextmanager
def served(settings: Settings, folder: Path) -> Iterator[str | None]:
    """With --local-model, the address of llama.cpp started for this shard; else None."""
    if not settings.local_model or settings.predictions is not None:
        yield None
        return
    with llama_server.serve(settings.context_window, folder / LOCAL_MODEL_LOG) as url:
        yield url


def model_for(settings: Settings, retries: int = RETRIES) -> OpenAIModel:
    return OpenAIModel(base_url=settings.base_url, model=settings.model, api_key=settings.api_key.get_secret_value(),
                       request_timeout=settings.request_timeout, slots=settings.slots(),
                       temperature=settings.temperature, max_tokens=settings.max_tokens,
                       fold_system_prompt=settings.fold_system_prompt, retries=retries)


def agent_limits(settings: Settings) -> AgentLimits:
    assert settings.token_budget is not None and settings.agent_timeout is not None, "resolve() derives them"
    return AgentLimits(step_limit=settings.step_limit, token_budget=settings.token_budget,
                       agent_timeout=settings.agent_timeout, command_timeout=settings.command_timeout,
                       context_window=settings.context_window, max_tokens=settings.max_tokens,
                       observation_chars=settings.observation_chars)


def clocks(settings: Settings, began: float) -> Clocks:
    """An instance's wall clock, the tests', and the shard's deadline from `began`."""
    deadline = None if settings.deadline_minutes is None else began + settings.deadline_minutes * 60
    return Clocks(settings.instance_time_limit(), settings.eval_timeout, deadline)


def solver_for(settings: Settings, agent_config: AgentConfig, planned: Sequence[Instance],
               model: OpenAIModel | None, config_hash: str) -> Solver:
    """`predictions` when --predictions is given, else the agent (which needs the model)."""
    if settings.predictions is not None:
        return predictions.solver(predictions.load_predictions(settings.predictions, planned))
    assert model is not None, "the agent needs a model"
    return attempt.solver(agent_for(settings, agent_config), agent_limits(settings), model, seed=settings.seed,
                          network=settings.agent_network == "bridge", config_hash=config_hash)


def agent_for(settings: Settings, agent_config: AgentConfig) -> Agent:
    """The agent the settings name, made once for the shard: the command seam's when a command is
    given, else the factory `agent` names (ci-eval's own by default)."""
    if settings.agent_command is not None and settings.agent != DEFAULT_AGENT:
        raise InputError("give agent or agent_command, not both: a command is run by the command seam")
    name = COMMAND_AGENT if settings.agent_command is not None else settings.agent
    return attempt.load_factory(name)(Options(agent_limits(settings), agent_config, settings.model,
                                              settings.agent_command))


def _run_shard(settings: Settings, agent_config: AgentConfig, plan: Plan, index: int, planned: Sequence[Instance],
               folder: Path, backend: Backend, began: float) -> ShardResult:
    config = settings.hashed()  # once: it reads the agent config's file
    config_hash = digest(config)
    model = model_for(settings) if settings.predictions is None else None
    solve = solver_for(settings, agent_config, planned, model, config_hash)  # bad predictions: one line, first
    environment = {} if settings.predictions is not None else \
        describe_server(settings.base_url, settings.model, settings.api_key.get_secret_value())
    write_manifest(folder, manifest(settings, plan, index, backend.name, config, environment))
    store = ResultStore(folder, config_hash)
    done, set_aside = store.resume()
    if set_aside:
        log.info(f"set aside {set_aside} result line(s) of another run in {folder}: their instances run again")
    jobs = pending_jobs(planned, settings.epochs, done, settings.max_attempts)
    total = len(planned) * settings.epochs
    log.info(f"shard {index}/{plan.of}: {len(planned)} instances, {len(jobs)} to run, "
             f"{backend.name} sandbox, {settings.workers} workers, results in {folder}")
    gate = ModelGate(None if model is None else lambda: model.wait_until_up(settings.model_down_minutes))
    show = display(total, total - len(jobs))
    pool = Pool(backend, solve, store, folder, clocks(settings, began), show, workers=settings.workers,
                max_attempts=settings.max_attempts, gate=gate, prune=settings.prune_images)
    try:
        asyncio.run(until_signal(_run(pool, jobs, model)))
    finally:
        show.close()
        store.close()
    stopped = f"the model server stayed down past --model-down-minutes {settings.model_down_minutes:g}" \
        if gate.gone else "--deadline-minutes passed"
    return ShardResult(folder, store.latest(), len(jobs), total, stopped)


async def _run(pool: Pool, jobs: Sequence[Job], model: OpenAIModel | None) -> None:
    beat = asyncio.create_task(heartbeat(pool.show))  # in CI, what runs, every few minutes
    try:
        if model is not None and jobs:
            await model.check()  # a server that is down is one clear line before any work
        await pool.run(jobs)
    finally:
        beat.cancel()
        await pool.backend.close()
        if model is not None:
            await model.close()


def manifest(settings: Settings, plan: Plan, index: int, sandbox: str, config: dict[str, Any],
             environment: dict[str, str | None] | None = None) -> Manifest:
    """The shard's identity (`config`: what `settings.hashed()` returned); the whole plan rides
    along so that aggregation can name the instances of a shard whose artifact never arrived."""
    return Manifest.model_validate({
        "identity": {
            "ci_eval_version": __version__,
            "model": settings.model if settings.predictions is None else f"predictions:{settings.predictions}",
            "base_url": config["base_url"] if settings.predictions is None else None,
            "dataset": settings.dataset,
            "split": settings.split,
            "revision": settings.revision,
            "dataset_fingerprint": plan.dataset_fingerprint,
            "config_hash": digest(config),
            # what the agent could reach: a run with the network is not comparable with one without
            "agent_network": settings.agent_network if settings.predictions is None else None,
            # which agent made the patches, when not ci-eval's own: the command, else the factory
            "agent": settings.agent_command or (settings.agent if settings.agent != DEFAULT_AGENT else None),
        },
        "config": config,
        "shard": {"index": index, "of": plan.of, "run_attempt": run_attempt()},
        "sandbox": sandbox,
        "epochs": settings.epochs,
        "planned": plan.shards[index],
        "plan": plan.shards,
        "sample": plan.sample,
        "environment": environment or {},
        "written_at": now(),
    })


def owner_of(folder: Path) -> str:
    """The label value of the containers this shard folder's runs make."""
    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]


"""Making the plan once, for the plan job: load the dataset, choose the instances, price them,
split them into shards (its file's shape is `contracts.plan.Plan`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ci_eval import machine
from ci_eval.config import Settings
from ci_eval.contracts.plan import Plan, SampleDesign
from ci_eval.dataset import load_instances
from ci_eval.document import read_document
from ci_eval.errors import InputError
from ci_eval.history import frequencies, load_history
from ci_eval.instances import Instance, allowed_images, fingerprint, select, subset, with_image_template
from ci_eval.partition import (
    SHARD_SETUP_MINUTES,
    balance,
    costs_for,
    default_cost,
    run_order,
    shards_for_budget,
    simulate,
)
from ci_eval.sample import at_random, informative, whole

log = logging.getLogger(__name__)

MATRIX_LIMIT = 256  # GitHub runs at most this many jobs from one matrix
JOB_LIMIT_HOURS = 6  # a GitHub-hosted job's limit
FITTING_BUDGET = 300  # minutes a shard is planned for when it must fit that limit (the workflow's default)


def make_plan(settings: Settings, of: int | None, timings: Path | None = None,
              budget_minutes: float | None = None) -> Plan:
    """`of` shards, or with `budget_minutes` the fewest expected to end in time."""
    # the images are part of the data: the fingerprint (like with like in a comparison) covers them
    dataset = with_image_template(load_instances(settings.dataset, settings.split, settings.revision),
                                  settings.image_template)
    chosen, design = choose(dataset, settings)
    gradable(chosen)  # here, in the plan job, not after every shard has installed Ollama and the model
    allowed_images(chosen, settings.image_pattern, settings.image_template)
    most = min(len(chosen), MATRIX_LIMIT)
    slots = priced_slots(settings)
    step = machine.step_seconds(machine.named(settings.machine), slots)
    costs = costs_for(chosen, timings, step)
    # Rows without a difficulty and no timings (SWE-bench Lite, the full set, SWE-bench-Live, your
    # own): shards balance by count, and the budget and the job limit are priced at the default.
    priced = costs or {i.instance_id: default_cost(i, step) for i in chosen}
    if not costs:
        log.info("no difficulty column and no --timings: each instance is priced at %.0f minutes",
                 next(iter(priced.values()), 0.0) / 60)
    if of is None:
        if budget_minutes is None:
            raise InputError("give either --of N or --budget-minutes M")
        of = shards_for_budget(chosen, priced, budget_minutes, slots, most)
    if not 1 <= of <= most:
        raise InputError(f"--of {of} is out of range: 1 to {most} (one shard per instance at most, and "
                         f"GitHub runs at most {MATRIX_LIMIT} jobs of a matrix)")
    shards = balance(chosen, of, costs)
    family = {i.instance_id: i.family for i in chosen}
    longest = max((simulate(run_order(ids, priced, family), priced, slots) for ids in shards), default=0.0)
    hours = (longest / 60 + SHARD_SETUP_MINUTES) / 60
    if hours > JOB_LIMIT_HOURS:
        fits = shards_for_budget(chosen, priced, FITTING_BUDGET, slots, most)
        log.warning("the longest of %d shard(s) is expected to take %.1f hours, past GitHub's %d-hour job limit "
                    "(its job would be cancelled and lose what it did): plan with --budget-minutes %d instead "
                    "(%d shards)", of, hours, JOB_LIMIT_HOURS, FITTING_BUDGET, fits)
    return Plan(dataset=settings.dataset, split=settings.split, revision=settings.revision,
                dataset_fingerprint=fingerprint(dataset), shards=shards, costs=costs,
                instances=chosen, sample=design)


def priced_slots(settings: Settings) -> int:
    """The slots a plan prices a shard by: an agent shard runs as fast as its model's slots, a
    predictions shard (no model) as its workers."""
    return settings.workers if settings.predictions is not None else settings.slots()


def gradable(instances: Sequence[Instance]) -> None:
    """Every instance has an eval script, or one line before any work: a classic-schema row can be
    planned but not graded (even with predictions: grading runs the eval script)."""
    scriptless = sorted(i.instance_id for i in instances if not i.eval_script)
    if scriptless:
        raise InputError(
            f"{len(scriptless)} instance(s) have no eval_script ({scriptless[0]}, …): a classic-schema row "
            "can be planned but not graded, since swebench 5 ships eval scripts as data and derives none from "
            "repo and version; use a dataset that has them (SWE-bench/SWE-bench_Verified as published now)")


def choose(dataset: list[Instance], settings: Settings) -> tuple[list[Instance], SampleDesign]:
    """--instance-ids, then --filter, then --sample-size with --sample-seed: stratified by the
    history of --sample-from where it is given, else at random."""
    pool = subset(select(dataset, settings.instance_ids), settings.filter, None, settings.sample_seed)
    size, seed = settings.sample_size, settings.sample_seed
    if size is None or size >= len(pool):
        return pool, whole(pool)
    if settings.sample_from:
        reports, _ = load_history(settings.sample_from)  # each report set aside is logged
        tried = frequencies(reports)
        if not any(i.instance_id in tried for i in pool):
            raise InputError(f"no instance of the dataset was run by the {len(reports)} report(s) of --sample-from; "
                             "give the reports of this dataset's runs, or leave --sample-from out for a random sample")
        if len(reports) < 2:
            # The gate's null keeps how the sample was chosen; chosen by the only baseline run, every
            # instance would be fixed by that choice and the test blind. One run: a random sample.
            log.info("one baseline run: a random sample of %d (an informative one drawn from the only run "
                     "would leave the gate nothing to compare)", size)
            chosen = subset(pool, None, size, seed)
            return chosen, at_random(chosen, len(pool), seed)
        chosen, design = informative(pool, tried, size, seed, len(reports))
        log.info("an informative sample of %d from %d baseline run(s): %s", size, len(reports),
                 ", ".join(f"{len(s.chosen)} of {s.population} {s.name:log}" for s in design.strata))
        return chosen, design
    log.info("a random sample of %d of %d instances (no --sample-from: no baseline history to stratify by)",
             size, len(pool))
    chosen = subset(pool, None, size, seed)
    return chosen, at_random(chosen, len(pool), seed)


def write_plan(path: Path, plan: Plan) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan.model_dump_json() + "\n", encoding="utf-8")


def read_plan(path: Path) -> Plan:
    return read_document(path, Plan, "a ci-eval plan", "make it with ci-eval plan --output")

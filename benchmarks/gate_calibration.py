"""How often the regression gate cries wolf, and how often it sees a real drop, for a weak model.

Simulates base-branch histories of 500 instances with the profile of a model that resolves a few
percent of SWE-bench Verified: most instances never, a few nearly always, some flaky. Each
history is `--baseline-runs` full runs drawn from the same true resolve probabilities; then a
pull request's run on a sample of `--sizes` instances, either with nothing changed or with every
probability cut by `--drop` (relative). Everything goes through ci-eval's own code: the plan's
sample choice (planfile.choose with --sample-from the history's reports), report.json as the
report builder makes it, and the aggregate's judgement (the same as `ci-eval compare`).

It prints, per sample kind and size: the false-alarm rate with nothing changed, the simulated
power at the drop, the power the comparisons stated for that drop, and the detectable drop the
comparisons stated (points of the full set) beside the one simulated (the smallest drop on a grid
flagged in 80% of runs).

    python benchmarks/gate_calibration.py [--histories 100] [--runs 10] [--sizes 20 40 60 80]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from ci_eval.config import Settings
from ci_eval.contracts import Record, Report
from ci_eval.instances import Instance
from ci_eval.planfile import choose
from ci_eval.report.aggregate import Gate, judge
from ci_eval.report.build import build_report
from ci_eval.report.merge import Merged
from ci_eval.results import now

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "instances.jsonl"
# SWE-bench Verified's 500 instances by repository.
REPOS = {"django/django": 231, "sympy/sympy": 75, "sphinx-doc/sphinx": 44, "matplotlib/matplotlib": 34,
         "scikit-learn/scikit-learn": 32, "astropy/astropy": 22, "pydata/xarray": 22, "pytest-dev/pytest": 19,
         "pylint-dev/pylint": 10, "psf/requests": 8, "mwaskom/seaborn": 2, "pallets/flask": 1}
GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def dataset() -> list[Instance]:
    template = json.loads(FIXTURE.read_text().splitlines()[0])
    rows = []
    for repo, count in REPOS.items():
        for n in range(count):
            rows.append(Instance.model_validate({**template, "instance_id": f"{repo.replace('/', '__')}-{n + 1000}",
                                                 "repo": repo}))
    return rows


def world(rng: random.Random, ids: list[str], solid: float, flaky: float) -> dict[str, float]:
    """True resolve probabilities: `solid` of the instances nearly always, `flaky` sometimes, the rest never."""
    p = {}
    for iid in ids:
        u = rng.random()
        p[iid] = rng.uniform(0.7, 0.95) if u < solid else rng.uniform(0.1, 0.5) if u < solid + flaky else 0.0
    return p


def run_report(p: dict[str, float], ids: list[str], rng: random.Random, scale: float = 1.0) -> Report:
    """One run over `ids`, as report.json: each instance resolved with probability scale * p."""
    stamp = now()
    records = {}
    for iid in ids:
        status = "resolved" if rng.random() < scale * p[iid] else "unresolved"
        records[(iid, 0)] = Record.model_validate({"instance_id": iid, "repo": iid.rsplit("-", 1)[0].replace("__", "/"),
                                                   "status": status, "started_at": stamp, "finished_at": stamp})
    identity = {"model": "weak", "dataset": "simulated", "split": "test", "config_hash": "sim"}
    return build_report(Merged(identity, [ids], 1, {}, [], records))


def simulate(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    instances = dataset()
    ids = [i.instance_id for i in instances]
    kinds = ("random", "informative")
    false_alarms = {(k, n): [] for k in kinds for n in args.sizes}  # type: dict[tuple[str, int], list[bool]]
    flagged = {(k, n): [] for k in kinds for n in args.sizes}  # type: dict[tuple[str, int], list[bool]]
    stated_power = {(k, n): [] for k in kinds for n in args.sizes}  # type: dict[tuple[str, int], list[float]]
    stated_drop = {(k, n): [] for k in kinds for n in args.sizes}  # type: dict[tuple[str, int], list[float]]
    grid = {(k, n, d): [] for k in kinds for n in args.sizes for d in GRID}  # type: dict[tuple[str, int, float], list[bool]]
    rates = []
    gate = Gate(alpha=args.alpha)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for h in range(args.histories):
            p = world(rng, ids, args.solid, args.flaky)
            rates.append(sum(p.values()) / len(p))
            folder = Path(tmp) / f"history-{h}"
            folder.mkdir()
            history = [run_report(p, ids, rng) for _ in range(args.baseline_runs)]
            for n, report in enumerate(history):
                (folder / f"run-{n}").mkdir()
                (folder / f"run-{n}" / "report.json").write_text(report.model_dump_json())
            for run in range(args.runs):
                for kind in kinds:
                    for size in args.sizes:
                        settings = Settings.model_validate({
                            "sample_size": size, "sample_seed": h * 1000 + run,
                            "sample_from": [folder] if kind == "informative" else []})
                        picked, design = choose(instances, settings)
                        chosen = [i.instance_id for i in picked]

                        def verdict(scale: float, chosen: list[str] = chosen, design: object = design,
                                    p: dict[str, float] = p, history: list[Report] = history) -> object:
                            new = run_report(p, chosen, rng, scale).model_copy(update={"sample": design})
                            return judge(history, new, gate)

                        same = verdict(1.0)
                        c = same.comparison  # type: ignore[attr-defined]
                        false_alarms[kind, size].append(same.verdict.word == "regression")  # type: ignore[attr-defined]
                        stated_power[kind, size].append(c.power[f"{args.drop:g}"])
                        stated_drop[kind, size].append(c.detectable_points if c.detectable_points is not None
                                                       else float("inf"))
                        worse = verdict(1 - args.drop)
                        flagged[kind, size].append(worse.verdict.word == "regression")  # type: ignore[attr-defined]
                        if run < args.grid_runs:
                            for d in GRID:
                                grid[kind, size, d].append(verdict(1 - d).verdict.word == "regression")  # type: ignore[attr-defined]
    mean_rate = statistics.mean(rates)
    print(f"{args.histories} histories x {args.runs} runs; true full-set rate {mean_rate:.1%} on average; "
          f"{args.baseline_runs} baseline runs; alpha {args.alpha:g}; drop {args.drop:.0%} "
          f"({args.drop * mean_rate * 100:.1f} points); {time.perf_counter() - began:.0f} s")
    print("| sample | size | false alarms | power (simulated) | power (stated) | detectable drop, stated "
          "(median, points) | detectable drop, simulated (points) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in kinds:
        for size in args.sizes:
            fa = false_alarms[kind, size]
            sim = next((d for d in GRID if grid[kind, size, d] and statistics.mean(grid[kind, size, d]) >= 0.8), None)
            median = statistics.median(stated_drop[kind, size])
            print(f"| {kind} | {size} | {statistics.mean(fa):.3f} (of {len(fa)}) | "
                  f"{statistics.mean(flagged[kind, size]):.2f} | {statistics.mean(stated_power[kind, size]):.2f} | "
                  f"{'none' if median == float('inf') else f'{median:.1f}'} | "
                  f"{'none' if sim is None else f'{sim * mean_rate * 100:.1f}'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--histories", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10, help="pull-request runs per history and configuration")
    parser.add_argument("--grid-runs", type=int, default=2, help="of those, how many also try every drop of the grid")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 60, 80])
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--drop", type=float, default=0.4)
    parser.add_argument("--solid", type=float, default=0.03, help="share of instances resolved nearly always")
    parser.add_argument("--flaky", type=float, default=0.08, help="share resolved sometimes")
    parser.add_argument("--seed", type=int, default=1)
    simulate(parser.parse_args())


if __name__ == "__main__":
    main()

"""How often the regression gate cries wolf, and how often it sees a real drop, in the conditions
real projects meet, through the real CLI.

Each condition simulates `--histories` base-branch histories of 500 instances (SWE-bench
Verified's repositories) for a weak model, then pull-request runs on an informative sample of
`--size` drawn from the history by `ci-eval plan --sample-from`, judged by `ci-eval compare`
(alpha 0.05) exactly as a user runs them; the verdict is read from the exit code and the stated
power from the judged report (`compare --output`). The worlds:

- `five runs`: 5 baseline runs, outcomes independent from run to run, in the earlier benchmark's
  world (3% of instances nearly always resolved, 8% sometimes, the rest never); `five runs,
  Beta mix`: the same in the Beta mix of the worlds below (most instances resolved rarely, not never);
- `one run, Beta mix` / `one run, Beta(0.5, 9.5)`: a project's first days, one baseline run;
- `epochs 4, temperature 0`: 3 baseline runs and the pull request with --epochs 4 whose
  epochs repeat each other;
- `shared effects`: each run adds a repository effect (SD 1.0) and a run effect (SD 0.4) on the logit;
- `server change, recorded` / `unrecorded`: the last 2 of 5 baseline runs and the pull request on
  a new server whose model resolves 0.75 as often; its version in the reports, or not;
- `reshuffled`: the pull request resolves other instances at the same full-set rate;
- `hidden no-verdicts`: a 40% drop where half the new failures end `too_slow`;
- `five pushes`: one pull request pushed five times with nothing changed (--push 1..5).

It prints, per condition, the false-alarm rate with nothing changed and the power at a 40%
drop (simulated, and as the reports stated it), each with a 95% Wilson interval.

    python benchmarks/gate_calibration.py [--histories 100] [--runs 5] [--size 60] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.contracts.plan import SampleDesign
from ci_eval.contracts.report import Report
from ci_eval.contracts.shard import Record
from ci_eval.report.build import build_report, wilson
from ci_eval.report.merge import Merged
from ci_eval.shard_folder import now

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "instances.jsonl"
REPOS = {"django/django": 231, "sympy/sympy": 75, "sphinx-doc/sphinx": 44, "matplotlib/matplotlib": 34,
         "scikit-learn/scikit-learn": 32, "astropy/astropy": 22, "pydata/xarray": 22, "pytest-dev/pytest": 19,
         "pylint-dev/pylint": 10, "psf/requests": 8, "mwaskom/seaborn": 2, "pallets/flask": 1}
DROP = 0.4
OLD, NEW = {"server": "ollama 0.14.3"}, {"server": "ollama 0.15.0"}
Probabilities = dict[str, float]


def ids_of() -> list[str]:
    return [f"{repo.replace('/', '__')}-{n + 1000}" for repo, count in REPOS.items() for n in range(count)]


def write_dataset(folder: Path, ids: list[str]) -> Path:
    template = json.loads(FIXTURE.read_text().splitlines()[0])
    path = folder / "dataset.jsonl"
    path.write_text("".join(json.dumps({**template, "instance_id": i, "repo": i.rsplit("-", 1)[0].replace("__", "/"),
                                        "difficulty": "<15 min fix"}) + "\n" for i in ids))
    return path


def beta_mix(rng: random.Random, ids: list[str]) -> Probabilities:
    """A weak model, about 5% of the full set: most instances near never, some sometimes, a few often."""
    def one() -> float:
        u = rng.random()
        return rng.betavariate(0.2, 20) if u < 0.85 else rng.betavariate(1, 4) if u < 0.97 else rng.betavariate(6, 2)
    return {i: one() for i in ids}


def solid_flaky(rng: random.Random, ids: list[str]) -> Probabilities:
    """The earlier benchmark's world: 3% of the instances nearly always, 8% sometimes, the rest never."""
    def one() -> float:
        u = rng.random()
        return rng.uniform(0.7, 0.95) if u < 0.03 else rng.uniform(0.1, 0.5) if u < 0.11 else 0.0
    return {i: one() for i in ids}


def beta_half(rng: random.Random, ids: list[str]) -> Probabilities:
    return {i: rng.betavariate(0.5, 9.5) for i in ids}


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@dataclass
class World:
    """How one condition's runs come about."""

    name: str
    baseline_runs: int = 5
    draw: Callable[[random.Random, list[str]], Probabilities] = beta_mix
    epochs: int = 1
    repeat_epochs: bool = False  # temperature 0: a run's epochs repeat its first
    repo_sd: float = 0.0
    run_sd: float = 0.0
    server_change: bool = False
    recorded: bool = True
    reshuffle: bool = False
    hidden: bool = False  # the drop's new failures half end too_slow
    pushes: int = 1
    power: bool = True
    notes: list[str] = field(default_factory=list)

    def probabilities(self, rng: random.Random, p: Probabilities, scale: float) -> Probabilities:
        """One run's resolve probabilities: shared effects drawn for this run."""
        if not (self.repo_sd or self.run_sd):
            return {i: scale * q for i, q in p.items()}
        run = rng.gauss(0, self.run_sd)
        repo = {r: rng.gauss(0, self.repo_sd) for r in REPOS}
        return {i: scale / (1 + math.exp(-(logit(q) + run + repo[i.rsplit("-", 1)[0].replace("__", "/")])))
                for i, q in p.items()}


def report_of(rng: random.Random, world: World, p: Probabilities, ids: list[str], environment: dict[str, str],
              drop: float = 0.0, design: dict[str, Any] | None = None) -> Report:
    """One run over `ids` as report.json (with the plan's sample design, as a shard carries it)."""
    stamp = now()
    records = {}
    for iid in ids:
        first = None
        for s in range(world.epochs):
            won = first if world.repeat_epochs and first is not None else rng.random() < p[iid]
            first = won if first is None else first
            status = "resolved" if won else "unresolved"
            if won and drop and rng.random() < drop:  # the drop: a resolve lost
                status = "too_slow" if world.hidden and rng.random() < 0.5 else "unresolved"
            records[(iid, s)] = Record.model_validate({
                "instance_id": iid, "repo": iid.rsplit("-", 1)[0].replace("__", "/"), "epoch": s, "status": status,
                "started_at": stamp, "finished_at": stamp})
    identity = {"model": "weak", "dataset": "simulated", "split": "test", "config_hash": "sim",
                "dataset_fingerprint": "sim"}
    report = build_report(Merged(identity, [ids], world.epochs, {}, [], records))
    return report.model_copy(update={"environment": environment if world.recorded else {},
                                     "sample": None if design is None else SampleDesign.model_validate(design)})


def plan(cli: CliRunner, dataset: Path, history: Path, size: int, seed: int,
         out: Path) -> tuple[list[str], dict[str, Any]]:
    result = cli.invoke(main, ["plan", "--dataset", str(dataset), "--sample-from", str(history), "--sample-size",
                               str(size), "--sample-seed", str(seed), "--of", "1", "--output", str(out)])
    assert result.exit_code == 0, result.output
    made = json.loads(out.read_text())
    return made["shards"][0], made["sample"]


def judge(cli: CliRunner, history: Path, new: Report, folder: Path, push: int = 1) -> tuple[str, dict[str, Any]]:
    path, judged = folder / "new.json", folder / "judged.json"
    path.write_text(new.model_dump_json())
    result = cli.invoke(main, ["compare", str(history), str(path), "--output", str(judged), "--push", str(push)])
    assert result.exit_code in (0, 1, 3, 4), result.output
    word = {0: "pass", 1: "regression", 3: "inconclusive", 4: "inconclusive"}[result.exit_code]
    return word, json.loads(judged.read_text())


def condition(world: World, args: argparse.Namespace, rng: random.Random) -> dict[str, list[Any]]:
    ids = ids_of()
    cli = CliRunner()
    seen: dict[str, list[Any]] = {"false": [], "flagged": [], "stated": [], "failed": [], "rate": [], "drop": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = write_dataset(root, ids)
        for h in range(args.histories):
            p = world.draw(rng, ids)
            seen["rate"].append(sum(p.values()) / len(p))
            history = root / f"h{h}"
            history.mkdir()
            for r in range(world.baseline_runs):
                late = world.server_change and r >= world.baseline_runs - 2
                q = world.probabilities(rng, p, 0.75 if late else 1.0)
                report = report_of(rng, world, q, ids, NEW if late else OLD)
                (history / f"run-{r}").mkdir()
                (history / f"run-{r}" / "report.json").write_text(report.model_dump_json())
            chosen, design = plan(cli, dataset, history, args.size, h, root / "plan.json")
            pr = dict(p)
            if world.reshuffle:  # other instances, the same full-set rate
                values = list(p.values())
                rng.shuffle(values)
                pr = dict(zip(p, values, strict=True))
            scale = 0.75 if world.server_change else 1.0
            for _ in range(args.runs):
                words = []
                for push in range(1, world.pushes + 1):
                    q = world.probabilities(rng, pr, scale)
                    word, judged = judge(cli, history, report_of(rng, world, q, chosen, NEW if world.server_change
                                                                 else OLD, design=design), root, push)
                    words.append(word)
                    points = (judged.get("comparison") or {}).get("detectable_points")
                    seen["drop"].append(math.inf if points is None else points)
                if world.hidden:
                    q = world.probabilities(rng, pr, scale)
                    word, _ = judge(cli, history, report_of(rng, world, q, chosen, OLD, DROP, design), root)
                    seen["failed"].append(word == "regression")
                    continue
                seen["false"].append("regression" in words)
                if world.power:
                    q = world.probabilities(rng, pr, scale)
                    word, judged = judge(cli, history, report_of(rng, world, q, chosen, NEW if world.server_change
                                                                 else OLD, DROP, design), root)
                    seen["flagged"].append(word == "regression")
                    seen["stated"].append((judged.get("comparison") or {}).get("power", {}).get(f"{DROP:g}", 0.0))
    return seen


def share(flags: list[bool]) -> str:
    if not flags:
        return "—"
    k, n = sum(flags), len(flags)
    low, high = wilson(k, n)
    return f"{k / n:.3f} ({low:.3f} to {high:.3f}, n={n})"


WORLDS = [
    World("five runs", draw=solid_flaky),
    World("five runs, Beta mix"),
    World("one run, Beta mix", baseline_runs=1),
    World("one run, Beta(0.5, 9.5)", baseline_runs=1, draw=beta_half),
    World("epochs 4, temperature 0", baseline_runs=3, epochs=4, repeat_epochs=True),
    World("shared effects", repo_sd=1.0, run_sd=0.4),
    World("server change, recorded", server_change=True, power=False),
    World("server change, unrecorded", server_change=True, recorded=False, power=False),
    World("reshuffled", reshuffle=True, power=False),
    World("hidden no-verdicts", hidden=True, power=False),
    World("five pushes", pushes=5, power=False),
]


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--histories", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5, help="pull-request runs per history")
    parser.add_argument("--size", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="the conditions to run (by name; all when not given)")
    args = parser.parse_args()
    print(f"{args.histories} histories x {args.runs} pull-request runs per condition; informative sample of "
          f"{args.size}; alpha 0.05; drop {DROP:.0%}")
    print("| condition | false alarms, nothing changed | power at a 40% drop, simulated | power, stated (mean) | "
          "detectable drop, stated (median, points) | hidden drop failed | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for world in WORLDS:
        if args.only and world.name not in args.only:
            continue
        began = time.perf_counter()
        seen = condition(world, args, random.Random(args.seed))
        stated = f"{statistics.mean(seen['stated']):.3f}" if seen["stated"] else "—"
        drop = statistics.median(seen["drop"]) if seen["drop"] else math.inf
        print(f"| {world.name} (full set {statistics.mean(seen['rate']):.1%}) | {share(seen['false'])} | "
              f"{share(seen['flagged'])} | {stated} | {'none' if drop == math.inf else f'{drop:.1f}'} | "
              f"{share(seen['failed'])} | {time.perf_counter() - began:.0f} |", flush=True)


if __name__ == "__main__":
    main_()

"""The verdict against a baseline history: paired numbers, the calibrated gate, its power, the
informative sample and the summary that opens with the answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.config import Settings
from ci_eval.history import Tries, read_report
from ci_eval.instances import Instance
from ci_eval.planfile import choose
from ci_eval.report.aggregate import aggregate
from ci_eval.report.stats import Paired, Power, RunTest, Spread, overdispersion, spent, stratified
from ci_eval.report.verdict import Gate
from ci_eval.sample import EVER, NEVER, allocate, informative
from tests.test_aggregate import IDENTITY, shard

IDS = [f"org__repo{n % 3}-{n}" for n in range(30)]


def run(root: Path, name: str, resolved: set[str], ids: list[str] = IDS, error: frozenset[str] = frozenset(),
        gate: Gate | None = None, baselines: list[Path] | None = None) -> Path:
    """One run over `ids` (one shard), aggregated: its report.json."""
    statuses = ["error" if i in error else "resolved" if i in resolved else "unresolved" for i in ids]
    shard(root / name / "shard", 0, statuses, plan=[ids], identity=IDENTITY)
    aggregate([root / name / "shard"], root / name / "report", baselines=baselines or [], gate=gate)
    return root / name / "report" / "report.json"


def test_the_before_and_after_pairs_the_same_instances(tmp_path: Path) -> None:
    """The issue's case: baseline 4 of 6 resolved; a pull request runs 3 of them and resolves all 3."""
    six = IDS[:6]
    base = run(tmp_path, "base", set(six[:4]), ids=six)  # resolves 0..3
    three = [six[0], six[4], six[5]]  # one the baseline resolved, two it did not
    new = run(tmp_path, "new", set(three), ids=three, baselines=[base])
    report = read_report(new)
    c = report.comparison
    assert c is not None and c.compared == 3
    assert c.base_rate == pytest.approx(1 / 3, abs=1e-4) and c.new_rate == 1.0  # not 66.7% -> 100%
    assert c.only_in_one == sorted(six[1:4]) and c.whole_run_base is not None and c.whole_run_base.rate == 0.6667
    summary = (tmp_path / "new" / "report" / "summary.md").read_text()
    first = summary.splitlines()[0]
    # three instances and one baseline run cannot show any drop: inconclusive for lack of data, never a pass
    assert first.startswith("## ⚠️ inconclusive — ci-eval: 33.3% → 100.0% on the 3 instances both sides judged"), first
    assert "could detect" in first
    # the ids planned by one side only are a count with a folded list
    assert "<details><summary>Not compared, planned by one side only: 3</summary>" in summary
    assert "Whole runs, over everything each planned (not the same instances)" in summary
    assert c.newly_resolved == sorted(three[1:]) and c.frequencies[three[1]].model_dump() == {"resolved": 0, "tries": 1}


def test_a_flaky_instance_is_not_a_regression_but_a_real_drop_is(tmp_path: Path) -> None:
    solid, flaky = set(IDS[:12]), set(IDS[12:18])
    # Five baseline runs: the solid 12 resolved every time, the flaky 6 in about half of them.
    history = [run(tmp_path, f"base-{k}", solid | {i for n, i in enumerate(sorted(flaky)) if (n + k) % 2})
               for k in range(5)]
    # One flaky instance and one solid one fail: noise, not a regression.
    noisy = run(tmp_path, "noisy", (solid - {IDS[0]}) | (flaky - {IDS[12]}), baselines=history)
    report = read_report(noisy)
    c = report.comparison
    assert c is not None and c.baseline_runs == 5 and c.compared == 30
    assert report.verdict is not None and report.verdict.word == "pass", report.verdict
    assert c.p_worse > 0.05 and c.newly_failing[0] == IDS[0]  # resolved 5 of 5 before, first in the list
    assert c.frequencies[IDS[12]].tries == 5
    # Half the solid ones fail and the flaky ones no better than before: significant, exit 1.
    worse = run(tmp_path, "worse", set(IDS[:6]) | set(sorted(flaky)[:3]), baselines=history)
    judged = read_report(worse)
    assert judged.verdict is not None and judged.verdict.word == "regression" and judged.verdict.exit_code == 1
    assert judged.comparison is not None and judged.comparison.p_worse < 0.05
    assert "significantly fewer resolved" in judged.verdict.reasons[0]
    # The same in the other direction: more than the history predicts is said, and still a pass.
    better = read_report(run(tmp_path, "better", set(IDS[:26]), baselines=history))
    assert better.verdict is not None and better.verdict.word == "pass" and better.verdict.better
    # A drop that an instance without a verdict here could undo, were it resolved, is not a
    # regression: inconclusive because the run lost a verdict (exit 4), not for lack of data.
    # (The first drop of the solid instances, one more each time, where one lost verdict decides it.)
    lost_one = next(r for k in range(2, 12) if (r := read_report(run(
        tmp_path, f"lost-{k}", (solid - set(IDS[12 - k:12])) | set(sorted(flaky)[2:]), error=frozenset({IDS[0]}),
        baselines=history))).verdict is not None and r.verdict.word != "pass")
    assert lost_one.verdict is not None and lost_one.verdict.word == "inconclusive", lost_one.verdict
    assert lost_one.verdict.cause == "lost_verdicts" and lost_one.verdict.exit_code == 4
    c = lost_one.comparison
    assert c is not None and c.p_worse_worst_case <= c.alpha_spent < c.p_worse and c.p_lost_verdicts > 0.1
    # Hiding failures in no-verdicts fails on its own: the 12 never-resolved instances end without a
    # verdict where no baseline run lost one (exit 1, whatever on-inconclusive says).
    kept = (solid - set(IDS[10:12])) | set(sorted(flaky)[2:])
    hidden = read_report(run(tmp_path, "hidden", kept, error=frozenset(IDS[18:30]), baselines=history))
    assert hidden.verdict is not None and hidden.verdict.word == "regression", hidden.verdict
    assert hidden.verdict.cause == "lost_verdicts" and hidden.verdict.exit_code == 1
    assert hidden.comparison is not None and hidden.comparison.p_lost_verdicts < 1e-6
    assert "significantly more instances without a verdict: 40%" in hidden.verdict.reasons[0]


def test_the_power_is_stated_and_can_make_a_pass_inconclusive(tmp_path: Path) -> None:
    history = [run(tmp_path, f"base-{k}", set(IDS[:3])) for k in range(3)]
    few = read_report(run(tmp_path, "few", set(IDS[:3]), ids=IDS, baselines=history,
                          gate=Gate(max_detectable_drop=2.0)))
    c = few.comparison
    assert c is not None and c.detectable_points is not None
    # 3 solid instances of 30 (10 points): only losing more than one of them is seen
    assert c.detectable_drop is not None and c.detectable_drop > 0.3 and c.detectable_points > 2.0
    assert c.power["0.2"] < c.power["0.6"] < c.power["1"] and c.power["1"] >= 0.8
    assert few.verdict is not None and few.verdict.word == "inconclusive"
    assert "could detect only drops of" in few.verdict.reasons[0]
    assert json.loads((tmp_path / "few" / "report" / "report.json").read_text())["comparison"]["power"]["0.4"] > 0
    # nothing resolved anywhere: no drop can be seen at all, and the summary says so
    none = read_report(run(tmp_path, "none", set(), ids=IDS[:5], baselines=[run(tmp_path, "b0", set(), IDS[:5])]))
    assert none.comparison is not None and none.comparison.detectable_points is None
    assert "could detect no drop at all" in (tmp_path / "none" / "report" / "summary.md").read_text().splitlines()[0]


def test_the_exact_test_is_mcnemars_with_one_run_and_widens_with_the_history() -> None:
    # One baseline run, 30 instances equally weighted: 8 resolved before and not now, 1 the other
    # way, 21 the same. McNemar's exact one-sided p is P(Binomial(9, 1/2) <= 1) = 10/512.
    same = [Paired((1.0,), 1.0, 1 / 30)] * 6 + [Paired((0.0,), 0.0, 1 / 30)] * 15
    pairs = tuple(same + [Paired((1.0,), 0.0, 1 / 30)] * 8 + [Paired((0.0,), 1.0, 1 / 30)])
    test = RunTest(pairs, 0.05)
    assert test.p_worse == pytest.approx(10 / 512)
    assert test.p_better == pytest.approx(1 - 1 / 512)
    # Five baseline runs that resolved an instance 2 times: this run's 0 is one of 3 zeros of 6.
    five = RunTest((Paired((1.0, 1.0, 0.0, 0.0, 0.0), 0.0, 1.0),), 0.05)
    assert five.p_worse == pytest.approx(4 / 6) and five.p_better == pytest.approx(1.0)
    # Runs that move together (each run resolves all or none of 20 instances) show overdispersion;
    # independent ones do not, and nothing can be seen from one run.
    weights = {f"i{n}": 1 / 20 for n in range(20)}
    together = [{i: float(k % 2) for i in weights} for k in range(6)]
    assert overdispersion(together, weights).phi == pytest.approx(20.0)
    assert overdispersion(together, weights).p_disagree < 1e-6
    rng = np.random.default_rng(3)
    apart = [{i: float(rng.random() < 0.5) for i in weights} for _ in range(6)]
    assert overdispersion(apart, weights).phi < 3 and overdispersion(apart, weights).p_disagree > 0.01
    assert overdispersion(together[:1], weights) == Spread()
    widened = RunTest(pairs, 0.05, Spread(phi=4.0, df=5, p_disagree=0.5))
    assert widened.p_worse > 0.05 > test.p_worse  # the same outcomes, a null four times as wide
    # Alpha spent over a pull request's pushes adds up to alpha at most.
    assert spent(0.05, 1) < 0.05 and sum(spent(0.05, k) for k in range(1, 10_000)) == pytest.approx(0.05, rel=1e-3)
    # Power grows with the drop, is alpha at most with none, and the detectable drop is where it is 80%.
    power = Power(pairs, (0.45, 0.35), epochs=1, alpha=0.05)  # the moments of these pairs' population
    assert power(0.0) <= 0.06 and power(0.2) < power(0.6) < power(1.0)
    drop = power.detectable()
    assert drop is not None and power(drop) == pytest.approx(0.8, abs=0.02)
    # The stratified estimator: weights by population, no sampling error where all was drawn.
    mean, se = stratified([(100, [1.0, 0.0, 1.0, 0.0], 0.0), (300, [0.0] * 4, 0.0)])
    assert mean == pytest.approx(0.125) and se > 0
    assert stratified([(4, [1.0, 0.0, 1.0, 0.0], 0.0)]) == (0.5, 0.0)


def dataset(n: int = 200) -> list[Instance]:
    template = json.loads((Path(__file__).parent / "fixtures" / "instances.jsonl").read_text().splitlines()[0])
    return [Instance.model_validate({**template, "instance_id": f"own__repo{k % 4}-{k}", "repo": f"own/repo{k % 4}"})
            for k in range(n)]


def test_the_informative_sample_is_stratified_stable_and_recorded(tmp_path: Path) -> None:
    rows = dataset()
    ids = [r.instance_id for r in rows]
    # 20 resolved at least once (10 always, 10 sometimes), 170 never, 10 never tried
    history = {iid: Tries(3 if n < 10 else 1 if n < 20 else 0, 3) for n, iid in enumerate(ids[:190])}
    chosen, design = informative(rows, history, 40, seed=7, runs=3)
    names = {s.name: s for s in design.strata}
    assert set(names) == {EVER, NEVER, "never tried"}
    assert names[EVER].chosen and names[NEVER].chosen  # every tried stratum sampled
    assert names["never tried"].chosen == [] and names["never tried"].population == 10  # nothing to compare with
    assert names[EVER].population == 20 and len(names[EVER].chosen) == 20  # the informative ones, all of them
    assert sum(len(s.chosen) for s in design.strata) == len(chosen) == 40
    assert {r.repo for r in chosen if r.instance_id in names[NEVER].chosen} == {f"own/repo{k}" for k in range(4)}
    # the same on every machine: a hash of seed and id orders the instances, not Python's hash or random
    again = informative(list(reversed(rows)), history, 40, seed=7, runs=3)[1]
    assert again == design
    assert names[EVER].chosen[:3] == ["own__repo0-0", "own__repo0-12", "own__repo0-16"]
    assert informative(rows, history, 40, seed=8, runs=3)[1] != design
    assert allocate({"a": 100, "b": 100}, {"a": 0.0, "b": 0.5}, 20) == {"a": 1, "b": 19}  # the floor
    assert allocate({"a": 100, "b": 10}, {"a": 0.0, "b": 0.5}, 20) == {"a": 10, "b": 10}  # b is used up
    assert allocate({"a": 100, "b": 100}, {"a": 0.1, "b": 0.3}, 40) == {"a": 10, "b": 30}


def test_plan_samples_from_reports_and_the_report_estimates_the_full_set(tmp_path: Path) -> None:
    rows = dataset(40)
    ids = [r.instance_id for r in rows]
    history = [run(tmp_path, f"base-{k}", set(ids[:8]) | ({ids[8 + k]}), ids=ids) for k in range(3)]
    # --sample-from a folder of reports
    settings = Settings.model_validate({"sample_size": 12, "sample_seed": 1, "sample_from": [tmp_path]})
    chosen, design = choose(rows, settings)
    assert design.kind == "informative" and design.baseline_runs == 3 and len(chosen) == 12
    assert {s.name for s in design.strata} == {EVER, NEVER}
    random_ = choose(rows, Settings.model_validate({"sample_size": 12, "sample_seed": 1}))[1]
    assert random_.kind == "random" and random_.population == 40
    # a run of the sample carries the design to its report, and the full set's change is estimated
    picked = [r.instance_id for r in chosen]
    new_dir = tmp_path / "pr"
    shard(new_dir / "shard", 0, ["unresolved"] * len(picked), plan=[picked], identity=IDENTITY)
    manifest = json.loads((new_dir / "shard" / "manifest.json").read_text())
    (new_dir / "shard" / "manifest.json").write_text(json.dumps({**manifest, "sample": design.model_dump()}))
    report = aggregate([new_dir / "shard"], new_dir / "report", baselines=history).report
    f = report.comparison.full_set if report.comparison else None
    assert f is not None and f.sampled and f.ci95[0] < f.change < 0 and f.rate < f.base_rate
    assert f.change == pytest.approx(-f.base_rate, abs=0.02)  # nothing resolved: the whole rate is lost
    assert report.verdict is not None and report.verdict.word == "regression"


def test_compare_re_derives_the_verdict_with_the_same_exit_codes(tmp_path: Path) -> None:
    history = [run(tmp_path, f"base-{k}", set(IDS[:15])) for k in range(3)]
    same = run(tmp_path, "same", set(IDS[:15]))
    worse = run(tmp_path, "worse", set(IDS[:5]))
    # one always-resolved instance fails, two end without a verdict: were they failures, a drop
    holes = run(tmp_path, "holes", set(IDS[1:15]), error=frozenset(IDS[10:12]))
    cli = CliRunner()
    passed = cli.invoke(main, ["compare", str(tmp_path / "base-0"), str(tmp_path / "base-1"),
                               str(history[2]), str(same)])
    assert passed.exit_code == 0 and "verdict: pass" in passed.stdout, passed.output
    assert passed.stdout.startswith("✅ pass — ci-eval: 50.0% → 50.0% on the 30 instances")
    failed = cli.invoke(main, ["compare", *map(str, history), str(worse)])
    assert failed.exit_code == 1 and "verdict: regression" in failed.stdout
    unsure = cli.invoke(main, ["compare", *map(str, history), str(holes)])
    assert unsure.exit_code == 4 and "verdict: inconclusive (lost_verdicts)" in unsure.stdout, unsure.output
    strict = cli.invoke(main, ["compare", *map(str, history), str(same), "--max-detectable-drop", "1"])
    assert strict.exit_code == 3 and "verdict: inconclusive (lack_of_data)" in strict.stdout
    # aggregate with the same history gives the same verdict as compare
    agg = cli.invoke(main, ["aggregate", str(tmp_path / "worse" / "shard"), "--output", str(tmp_path / "again"),
                            *(a for h in history for a in ("--baseline", str(h)))])
    assert agg.exit_code == 1 and agg.stdout.splitlines()[-1] == failed.stdout.splitlines()[-1]
    bad = cli.invoke(main, ["compare", str(same)])
    assert bad.exit_code == 2 and "BASE... NEW" in bad.output


def test_every_status_says_why_and_links_its_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "me/app")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    ids = IDS[:6]
    base = run(tmp_path, "base", set(ids))
    statuses = ["resolved", "unresolved", "empty_patch", "patch_failed", "timeout", "error"]
    shard(tmp_path / "new" / "shard", 0, statuses, plan=[ids], identity=IDENTITY)
    result = CliRunner().invoke(main, ["aggregate", str(tmp_path / "new" / "shard"), "--output",
                                       str(tmp_path / "new" / "report"), "--baseline", str(base)])
    summary = (tmp_path / "new" / "report" / "summary.md").read_text()
    assert result.exit_code in (1, 3, 4), result.output
    assert summary.splitlines()[0].startswith("## ❌ regression") or summary.splitlines()[0].startswith("## ⚠️")
    for reason in ("tests still failing", "the agent changed no file", "the patch did not apply",
                   "the tests hung under the patch", "an infrastructure failure"):
        assert reason in summary, reason
    assert "[artifact](https://github.com/me/app/actions/runs/42#artifacts)" in summary
    assert "```mermaid\nxychart-beta" in summary and "<details><summary>Terms</summary>" in summary
    assert "Not the published SWE-bench/SWE-bench_Verified at a pinned revision" in summary  # dataset `d`


def test_the_comment_states_what_inconclusive_does_to_the_check(tmp_path: Path) -> None:
    from ci_eval.report.aggregate import judged

    history = [read_report(run(tmp_path, f"base-{k}", set(IDS[:15]))) for k in range(3)]
    holes = read_report(run(tmp_path, "holes", set(IDS[1:15]), error=frozenset(IDS[10:12])))
    warned = judged(history, holes, Gate())
    failed = judged(history, holes, Gate(on_inconclusive="fail"))
    assert warned.verdict.word == failed.verdict.word == "inconclusive"
    assert warned.summary.splitlines()[0].startswith("## ⚠️ inconclusive")
    assert "is a warning here, not a failure (on-inconclusive: warn)" in warned.summary
    assert "Inconclusive **fails** this check (on-inconclusive: fail)" in failed.summary

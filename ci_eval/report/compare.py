"""This run against a baseline history, instance by instance: the exact test of report/stats.py
with the run as the unit, its power, the full set's change estimated from the sample's design,
and how many more verdicts the run lost than its baseline did. What that makes of the run is
report/verdict.py."""

from __future__ import annotations

from collections.abc import Sequence

from ci_eval import sample
from ci_eval.contracts.plan import SampleDesign, Stratum
from ci_eval.contracts.report import BaselineTries, Comparison, FullSetChange, HistoryPoint, Report, SetAside
from ci_eval.report.stats import EVER, NEVER, Paired, Power, RunTest, overdispersion, spent, stratified

ALPHA = 0.05
POWER = 0.8  # the detectable drop is the one flagged this often
CURVE = (0.2, 0.4, 0.6, 0.8, 1.0)  # the relative drops whose power a comparison states
Z95 = 1.959964
TEST = ("exact conditional test, runs exchangeable under no change (McNemar's with one baseline run), "
        "given how the sample was chosen: did the compared instances get worse")
# What a pull request does not choose and a result depends on: a baseline run that differs from
# this run in one of these is set aside. The model and the agent config are what a pull request
# may change (its question); the server's version, a model's digest under the same name, the
# dataset and the agent's network are drift. ci-eval's version is recorded, not compared.
ENVIRONMENT = ("server", "dataset_fingerprint", "agent_network")


def _rate(k: float, n: float) -> float:
    return round(k / n, 4) if n else 0.0


def shares(report: Report) -> dict[str, float]:
    """One run's instances with a model verdict, each the share of its epochs resolved: a run is
    one observation per instance, however many epochs it took."""
    out = {}
    for iid, e in report.instances.items():
        if e.status.verdict is None:
            continue
        out[iid] = e.resolved_epochs / e.epochs if e.epochs else float(e.status.verdict)
    return out


def drift(base: Report, new: Report) -> str | None:
    """Why a baseline run is not like this one (None: it is)."""
    was, now = {**base.identity, **base.environment}, {**new.identity, **new.environment}
    for key in ENVIRONMENT:
        if was.get(key) != now.get(key):
            return f"{key} {was.get(key)!r}, this run {now.get(key)!r}"
    if was.get("model") == now.get("model") and was.get("model_digest") != now.get("model_digest"):
        return f"model digest {was.get('model_digest')!r}, this run {now.get('model_digest')!r}"
    return None


def reasons_chosen(design: SampleDesign | None) -> dict[str, str]:
    """What an informative sample chose each instance for, by its stratum: the test's null must
    keep that choice (a random sample chose by nothing the runs did)."""
    if design is None or design.kind != "informative":
        return {}
    kinds = {sample.EVER: EVER, sample.NEVER: NEVER}
    return {i: kinds[s.name] for s in design.strata if s.name in kinds for i in s.chosen}


def compare(history: Sequence[Report], new: Report, alpha: float = ALPHA, push: int = 1) -> Comparison:
    """Paired over the instances both sides planned and judged; `history` oldest first. Baseline
    runs unlike this one are set aside; `push` says which run of a pull request this is."""
    kept = [r for r in history if drift(r, new) is None]
    aside = [SetAside(run=n + 1, why=why) for n, r in enumerate(history) if (why := drift(r, new)) is not None]
    runs = [shares(r) for r in kept]
    now = shares(new)
    base_planned = {iid for report in kept for iid in report.instances}
    both = sorted(set(new.instances) & base_planned)
    judged = [i for i in both if i in now and any(i in r for r in runs)]
    chosen_for = reasons_chosen(new.sample)
    items = tuple(Paired.weighed(tuple(r[i] for r in runs if i in r), now[i], chosen_for.get(i, "")) for i in judged)
    spread = overdispersion(runs, dict.fromkeys(judged, 1.0))
    level = spent(alpha, push)
    test = RunTest(items, level, spread)
    no_verdict_new = [i for i in both if new.instances[i].status.verdict is None]
    open_ = [i for i in no_verdict_new if any(i in r for r in runs)]
    worst = _with(test, [Paired.weighed(tuple(r[i] for r in runs if i in r), 0.0, chosen_for.get(i, ""))
                         for i in open_])
    best = _with(test, [Paired.weighed(p.base, 1.0, p.chosen_for) for p in worst.items[len(items):]])
    first = _moments(runs, now, judged)
    power = Power(items, first, max(new.epochs, 1), level, spread)
    drop = power.detectable(POWER)
    share = {p_i: sum(p.base) / len(p.base) for p_i, p in zip(judged, items, strict=True)}
    lost = lost_verdicts(kept, new, both, alpha)
    return Comparison(
        baseline_runs=len(kept), set_aside=aside, compared=len(judged), push=push, alpha_spent=round(level, 6),
        base_rate=_rate(sum(share.values()), len(judged)), new_rate=_rate(sum(now[i] for i in judged), len(judged)),
        resolved=sum(new.instances[i].resolved_epochs for i in judged),
        tries=sum(max(new.instances[i].epochs, 1) for i in judged),
        expected=round(sum(share[i] * max(new.instances[i].epochs, 1) for i in judged), 3), test=TEST, alpha=alpha,
        p_worse=round(test.p_worse, 6), p_better=round(test.p_better, 6),
        p_worse_best_case=round(best.p_worse, 6), p_worse_worst_case=round(worst.p_worse, 6),
        overdispersion=round(spread.phi, 4), p_disagree=round(spread.p_disagree, 6),
        no_verdict_rate_base=lost[0], no_verdict_rate_new=lost[1], p_lost_verdicts=lost[2],
        detectable_drop=None if drop is None else round(drop, 4),
        detectable_points=None if drop is None else round(drop * first[0] * 100, 2),
        power={f"{d:g}": round(power(d), 4) for d in CURVE},
        full_set=_full_set(new.sample, {i: p for i, p in zip(judged, items, strict=True)}, first[0]),
        frequencies={i: BaselineTries(resolved=round(sum(p.base), 4), tries=len(p.base))
                     for i, p in zip(judged, items, strict=True)},
        newly_failing=sorted((i for i in judged if share[i] >= 0.5 > now[i]), key=lambda i: (-share[i], i)),
        newly_resolved=sorted((i for i in judged if now[i] >= 0.5 > share[i]), key=lambda i: (share[i], i)),
        no_verdict_new=no_verdict_new,
        no_verdict_base=[i for i in both if i in now and not any(i in r for r in runs)],
        only_in_one=sorted(set(new.instances) ^ base_planned),
        whole_run_base=kept[-1].resolve_rate if kept else None,
        history=[*(_point(f"base {n + 1}", run, judged) for n, run in enumerate(runs)),
                 _point("this run", now, judged)],
    )


def _with(test: RunTest, more: Sequence[Paired]) -> RunTest:
    return RunTest(test.items + tuple(more), test.alpha, test.spread)


def _moments(runs: Sequence[dict[str, float]], now: dict[str, float], judged: Sequence[str]) -> tuple[float, float]:
    """E[p] over the instances the history judged, and E[p^2]: from pairs of baseline runs where
    there are two, else from this run's agreement with the one (the only pair there is)."""
    values = [[r[i] for r in runs if i in r] for i in {i for r in runs for i in r}]
    m1 = sum(sum(v) / len(v) for v in values) / len(values) if values else 0.0
    pairs = [(sum(v) ** 2 - sum(x * x for x in v)) / (len(v) * (len(v) - 1)) for v in values if len(v) > 1]
    if pairs:
        return m1, sum(pairs) / len(pairs)
    agree = [now[i] * next(r[i] for r in runs if i in r) for i in judged]
    return m1, sum(agree) / len(agree) if agree else m1 * m1


def lost_verdicts(kept: Sequence[Report], new: Report, both: Sequence[str], alpha: float) -> tuple[float, float, float]:
    """Whether this run ends significantly more instances without a verdict than its baseline runs
    did (the baseline's rate, this run's, and the one-sided p): the same exchangeable-runs test on
    "no verdict", over the instances both planned, so that an agent cannot hide its failures in
    time-outs, broken sandboxes or gradings that end without a result."""
    items = []
    for i in both:
        base = tuple(float(r.instances[i].status.verdict is None) for r in kept if i in r.instances)
        items.append(Paired(base, float(new.instances[i].status.verdict is None), 1.0))
    if not items:
        return 0.0, 0.0, 1.0
    test = RunTest(tuple(items), alpha)
    base_rate = sum(sum(p.base) / len(p.base) for p in items) / len(items)
    return round(base_rate, 4), round(sum(p.new for p in items) / len(items), 4), round(test.p_better, 6)


def _point(label: str, run: dict[str, float], judged: list[str]) -> HistoryPoint:
    seen = [run[i] for i in judged if i in run]
    return HistoryPoint(label=label, rate=_rate(sum(seen), len(seen)), judged=len(seen))


def _full_set(design: SampleDesign | None, items: dict[str, Paired], base_rate: float) -> FullSetChange | None:
    """The stratified estimate of the change over the full set the sample stands for: per stratum
    the mean of (this run's share - the baseline runs' mean) over its compared instances."""
    if not items:
        return None
    if design is None:  # a report older than sample designs: the compared instances are the set
        design = SampleDesign(kind="all", population=len(items),
                              strata=[Stratum(name="all", population=len(items), chosen=list(items))])
    strata = []
    for s in design.strata:
        inside = [items[i] for i in s.chosen if i in items]
        # Never less spread than a stratum's outcomes allow (Jeffreys-smoothed over its baseline
        # values): a stratum all 0 in a few draws is not certain.
        values = [v for p in inside for v in p.base]
        smooth = (sum(values) + 0.5) / (len(values) + 1)
        strata.append((s.population, [p.new - sum(p.base) / len(p.base) for p in inside], smooth * (1 - smooth)))
    change, se = stratified(strata)
    return FullSetChange(base_rate=round(base_rate, 4), rate=round(base_rate + change, 4), change=round(change, 4),
                         ci95=(round(change - Z95 * se, 4), round(change + Z95 * se, 4)),
                         sampled=design.kind != "all")

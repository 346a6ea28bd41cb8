"""This run against a baseline history, instance by instance, and the verdict: the exact test of
report/stats.py with the run as the unit, its power, the full set's change estimated from the
sample's design, and the check that a run loses no more verdicts than its baseline did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ci_eval import sample
from ci_eval.contracts import (
    EXIT_CODES,
    BaselineTries,
    Cause,
    Comparison,
    FullSetChange,
    HistoryPoint,
    Report,
    SampleDesign,
    SetAside,
    Stratum,
    Verdict,
)
from ci_eval.report.stats import EVER, NEVER, Paired, Power, RunTest, overdispersion, spent, stratified

PASS: Final = "pass"
REGRESSION: Final = "regression"
INCONCLUSIVE: Final = "inconclusive"
ALPHA = 0.05
POWER = 0.8  # the detectable drop is the one flagged this often
CURVE = (0.2, 0.4, 0.6, 0.8, 1.0)  # the relative drops whose power a comparison states
DISAGREE = 0.01  # a history whose runs disagree this improbably is not used to call a regression
Z95 = 1.959964
TEST = ("exact conditional test, runs exchangeable under no change (McNemar's with one baseline run), "
        "given how the sample was chosen: did the compared instances get worse")
# What a pull request does not choose and a result depends on: a baseline run that differs from
# this run in one of these is set aside. The model and the agent config are what a pull request
# may change (its question); the server's version, a model's digest under the same name, the
# dataset and the agent's network are drift. ci-eval's version is recorded, not compared.
ENVIRONMENT = ("server", "dataset_fingerprint", "agent_network")

__all__ = ["ALPHA", "EXIT_CODES", "Comparison", "Verdict", "compare", "verdict"]


def _rate(k: float, n: float) -> float:
    return round(k / n, 4) if n else 0.0


def shares(report: Report) -> dict[str, float]:
    """One run's instances with a model verdict, each the share of its samples resolved: a run is
    one observation per instance, however many samples it took."""
    out = {}
    for iid, e in report.instances.items():
        if e.status.verdict is None:
            continue
        out[iid] = e.resolved_samples / e.samples if e.samples else float(e.status.verdict)
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
    power = Power(items, first, max(new.samples, 1), level, spread)
    drop = power.detectable(POWER)
    share = {p_i: sum(p.base) / len(p.base) for p_i, p in zip(judged, items, strict=True)}
    lost = lost_verdicts(kept, new, both, alpha)
    return Comparison(
        baseline_runs=len(kept), set_aside=aside, compared=len(judged), push=push, alpha_spent=round(level, 6),
        base_rate=_rate(sum(share.values()), len(judged)), new_rate=_rate(sum(now[i] for i in judged), len(judged)),
        resolved=sum(new.instances[i].resolved_samples for i in judged),
        tries=sum(max(new.instances[i].samples, 1) for i in judged),
        expected=round(sum(share[i] * max(new.instances[i].samples, 1) for i in judged), 3), test=TEST, alpha=alpha,
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


def verdict(new: Report, comparison: Comparison | None, *, fail_under: float | None = None,
            max_new_failures: int | None = None, baseline_missing: bool = False, fail_on_suspicious: bool = False,
            max_detectable_drop: float | None = None) -> Verdict:
    """`regression` when a rule is broken whatever the instances without a verdict would have been:
    the calibrated test at the alpha this push may spend, an explicit limit, or significantly more
    instances without a verdict than the baseline runs had (cause `lost_verdicts`). `inconclusive`
    with cause `lost_verdicts` when the instances without a verdict could decide it; with cause
    `lack_of_data` when no baseline run like this one exists, none shares a judged instance, or
    the run could not have seen a drop of --max-detectable-drop points; with cause
    `unstable_history` when the baseline runs disagree among themselves more than chance allows
    and the test alone would call a regression. Else `pass`."""
    unknown = [i for i, e in new.instances.items() if e.status.verdict is None]
    rate = new.resolve_rate
    broken: dict[Cause, list[str]] = {}
    open_: dict[Cause, list[str]] = {}
    notes: list[str] = []
    if fail_under is not None and rate.rate < fail_under:
        best = (rate.resolved + len(unknown)) / max(rate.planned, 1)
        cause: Cause = "limit" if best < fail_under else "lost_verdicts"
        (broken if best < fail_under else open_).setdefault(cause, []).append(
            f"resolve rate {rate.rate:.1%} is under --fail-under {fail_under:.1%}"
            + ("" if best < fail_under else f" (at most {best:.1%} with the instances without a verdict)"))
    c = comparison
    if c is not None:
        _judge_test(c, broken, open_, notes)
    if c is not None and max_new_failures is not None and len(c.newly_failing) > max_new_failures:
        broken.setdefault("limit", []).append(f"{len(c.newly_failing)} newly failing instance(s), more than "
                                              f"--max-new-failures {max_new_failures}")
    if fail_on_suspicious and new.suspicious:
        broken.setdefault("limit", []).append(
            f"{len(new.suspicious)} instance(s) with a patch that touches test collection or configuration "
            "(--fail-on-suspicious)")
    if c is None and unknown:  # nothing to weigh them against: a run alone with holes is no pass
        open_.setdefault("lost_verdicts", []).append(
            f"{len(unknown)} planned instance(s) have no verdict (infrastructure failure, too slow, not attempted or "
            "unreadable)")
    if baseline_missing and c is None:
        open_.setdefault("lack_of_data", []).append("no baseline report was found to compare against")
    if not broken and not open_ and c is not None and c.compared and c.detectable_points is None:
        open_.setdefault("lack_of_data", []).append(
            "this run could detect no drop at all, even losing every resolve: compare more instances, or more "
            "informative ones")
    elif not broken and not open_ and c is not None and c.compared and max_detectable_drop is not None \
            and c.detectable_points is not None and c.detectable_points > max_detectable_drop:
        open_.setdefault("lack_of_data", []).append(
            f"this run could detect only drops of {c.detectable_points:.1f} points (80% power), not the "
            f"{max_detectable_drop:g} points of "
            "--max-detectable-drop: a larger or more informative sample is needed")
    better = bool(notes)
    everything = [r for rs in (*broken.values(), *open_.values()) for r in rs]
    if broken:
        return Verdict(word=REGRESSION, cause=next(iter(broken)), reasons=everything)
    if open_:
        return Verdict(word=INCONCLUSIVE, cause=next(iter(open_)), reasons=everything + notes, better=better)
    return Verdict(word=PASS, reasons=notes, better=better)


def _judge_test(c: Comparison, broken: dict[Cause, list[str]], open_: dict[Cause, list[str]],
                notes: list[str]) -> None:
    """What the comparison says: the no-verdict check first (it holds whatever the test says), then the test."""
    if c.p_lost_verdicts <= c.alpha_spent:
        broken.setdefault("lost_verdicts", []).append(
            f"significantly more instances without a verdict: {c.no_verdict_rate_new:.0%} of the planned ones where "
            f"the baseline runs had {c.no_verdict_rate_base:.0%} (one-sided p = {c.p_lost_verdicts:.3g})")
    if not c.baseline_runs:
        unlike = "; ".join(f"base {a.run}: {a.why:md}" for a in c.set_aside[:3])
        open_.setdefault("lack_of_data", []).append(f"no baseline run is like this one ({unlike})")
        return
    if not c.compared:
        open_.setdefault("lack_of_data", []).append("no instance has a model verdict in both this run and the baseline")
        return
    said = f"{c.new_rate:.1%} resolved where the baseline runs resolved {c.base_rate:.1%} of the same instances"
    significant = c.p_worse <= c.alpha_spent
    if significant and c.p_disagree <= DISAGREE:
        open_.setdefault("unstable_history", []).append(
            f"fewer resolved ({said}, p = {c.p_worse:.3g}), but the baseline runs disagree among themselves more than "
            f"chance allows (p = {c.p_disagree:.3g}): the history is not used to call a regression")
    elif significant:
        reason = f"significantly fewer resolved: {said} (one-sided p = {c.p_worse:.3g} <= alpha {c.alpha_spent:.3g})"
        if c.p_worse_best_case <= c.alpha_spent:  # whatever the instances without a verdict would have been
            broken.setdefault("test", []).append(reason)
        else:
            open_.setdefault("lost_verdicts", []).append(f"{reason}; the instances without a verdict could change that")
    elif c.p_worse_worst_case <= c.alpha_spent:
        open_.setdefault("lost_verdicts", []).append(
            f"{len(c.no_verdict_new)} compared instance(s) have no verdict here, and failing would make it a "
            "significant drop")
    elif c.p_better <= c.alpha_spent:
        notes.append(f"significantly more resolved: {said} (one-sided p = {c.p_better:.3g})")

"""This run against a baseline history, instance by instance, and the verdict: the exact test of
report/stats.py, its power, and the full set's change estimated from the sample's design."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from ci_eval.contracts import (
    EXIT_CODES,
    Comparison,
    FullSetChange,
    HistoryPoint,
    Report,
    SampleDesign,
    Stratum,
    Verdict,
)
from ci_eval.history import Tries, summed, tries_in
from ci_eval.report.stats import WeightedTest, fit_prior, posterior, stratified

PASS: Final = "pass"
REGRESSION: Final = "regression"
INCONCLUSIVE: Final = "inconclusive"
ALPHA = 0.05
POWER = 0.8  # the detectable drop is the one flagged this often
CURVE = (0.2, 0.4, 0.6, 0.8, 1.0)  # the relative drops whose power a comparison states
Z95 = 1.959964
TEST = "exact weighted likelihood-ratio test, empirical-Bayes prior over the baseline history"

__all__ = ["ALPHA", "EXIT_CODES", "Comparison", "Verdict", "compare", "verdict"]


def _rate(k: float, n: float) -> float:
    return round(k / n, 4) if n else 0.0


def compare(history: Sequence[Report], new: Report, alpha: float = ALPHA) -> Comparison:
    """Paired over the instances both sides planned and judged; `history` oldest first."""
    per_run = [tries_in(r) for r in history]  # once: for the frequencies and for the chart
    freq = summed(per_run)
    prior = fit_prior([(t.resolved, t.tries) for t in freq.values()])
    now = tries_in(new)
    base_planned = {iid for report in history for iid in report.instances}
    both = sorted(set(new.instances) & base_planned)
    judged = [i for i in both if i in now and i in freq]

    def belief(iid: str) -> np.ndarray:
        return posterior(prior, freq[iid].resolved, freq[iid].tries)

    test = WeightedTest(tuple(belief(i) for i in judged), tuple(now[i].tries for i in judged), alpha)
    resolved = sum(now[i].resolved for i in judged)
    tries = sum(now[i].tries for i in judged)
    no_verdict_new = [i for i in both if new.instances[i].status.verdict is None]
    # The best this run could have done: its instances without a verdict all resolved.
    open_ = [i for i in no_verdict_new if i in freq]
    best = WeightedTest(test.posteriors + tuple(belief(i) for i in open_),
                        test.tries + tuple(max(new.instances[i].samples, 1) for i in open_), alpha)
    outcomes = tuple(now[i].resolved for i in judged)
    full_rate = sum(t.resolved / t.tries for t in freq.values()) / len(freq) if freq else 0.0
    drop = test.detectable(POWER)
    share = {i: freq[i].resolved / freq[i].tries for i in judged}
    mine = {i: now[i].resolved / now[i].tries for i in judged}
    return Comparison(
        baseline_runs=len(history), compared=len(judged),
        base_rate=_rate(sum(share.values()), len(judged)), new_rate=_rate(resolved, tries),
        resolved=resolved, tries=tries, expected=round(test.expected, 3), test=TEST, alpha=alpha,
        p_worse=round(test.p_worse(outcomes), 6), p_better=round(test.p_better(outcomes), 6),
        p_worse_best_case=round(best.p_worse(outcomes + best.tries[len(judged):]), 6),
        detectable_drop=None if drop is None else round(drop, 4),
        detectable_points=None if drop is None else round(drop * full_rate * 100, 2),
        power={f"{d:g}": round(test.power(d), 4) for d in CURVE},
        full_set=_full_set(new.sample, judged, share, mine, test, full_rate),
        frequencies={i: freq[i].typed() for i in judged},
        newly_failing=sorted((i for i in judged if share[i] >= 0.5 > mine[i]), key=lambda i: (-share[i], i)),
        newly_resolved=sorted((i for i in judged if mine[i] >= 0.5 > share[i]), key=lambda i: (share[i], i)),
        no_verdict_new=no_verdict_new,
        no_verdict_base=[i for i in both if i not in freq and i in now],
        only_in_one=sorted(set(new.instances) ^ base_planned),
        whole_run_base=history[-1].resolve_rate if history else None,
        history=[*(_point(f"base {n + 1}", run, judged) for n, run in enumerate(per_run)),
                 _point("this run", now, judged)],
    )


def _point(label: str, tries: dict[str, Tries], judged: list[str]) -> HistoryPoint:
    seen = [tries[i] for i in judged if i in tries]
    return HistoryPoint(label=label, rate=_rate(sum(t.resolved for t in seen), sum(t.tries for t in seen)),
                        judged=len(seen))


def _full_set(design: SampleDesign | None, judged: list[str], share: dict[str, float], mine: dict[str, float],
              test: WeightedTest, base_rate: float) -> FullSetChange | None:
    """The stratified estimate of the change over the full set the sample stands for: per stratum
    the mean of (this run's rate - the baseline's frequency) over its compared instances."""
    if not judged:
        return None
    if design is None:  # a report older than sample designs: the compared instances are the set
        design = SampleDesign(kind="all", population=len(judged),
                              strata=[Stratum(name="all", population=len(judged), chosen=judged)])
    mean_of = dict(zip(judged, test.means, strict=True))
    strata = []
    for s in design.strata:
        inside = [i for i in s.chosen if i in mean_of]
        # Never less spread than the outcomes' own noise: a stratum all 0 in a few draws is not certain.
        floor = sum(mean_of[i] * (1 - mean_of[i]) for i in inside) / len(inside) if inside else 0.0
        strata.append((s.population, [mine[i] - share[i] for i in inside], floor))
    change, se = stratified(strata)
    return FullSetChange(base_rate=round(base_rate, 4), rate=round(base_rate + change, 4), change=round(change, 4),
                         ci95=(round(change - Z95 * se, 4), round(change + Z95 * se, 4)),
                         sampled=design.kind != "all")


def verdict(new: Report, comparison: Comparison | None, *, fail_under: float | None = None,
            max_new_failures: int | None = None, baseline_missing: bool = False, fail_on_suspicious: bool = False,
            max_detectable_drop: float | None = None) -> Verdict:
    """`regression` when a rule is broken whatever the instances without a verdict would have
    been: the calibrated test (this run resolves significantly fewer of the compared instances than
    their history predicts, at its alpha), or an explicit limit. `inconclusive` when those instances
    could decide it, when any planned instance has no verdict (a crashed shard is never a pass, nor
    a regression), when a wanted baseline is missing or shares no judged instance, or when the run
    could not have seen a drop of --max-detectable-drop points. Else `pass`."""
    unknown = [i for i, e in new.instances.items() if e.status.verdict is None]
    rate = new.resolve_rate
    broken: list[str] = []
    open_: list[str] = []
    notes: list[str] = []
    if fail_under is not None and rate.rate < fail_under:
        best = (rate.resolved + len(unknown)) / max(rate.planned, 1)
        (broken if best < fail_under else open_).append(
            f"resolve rate {rate.rate:.1%} is under --fail-under {fail_under:.1%}"
            + ("" if best < fail_under else f" (at most {best:.1%} with the instances without a verdict)"))
    c = comparison
    if c is not None and c.compared:
        said = (f"{c.resolved} of {c.tries} compared tries resolved where the history predicts {c.expected:.1f}")
        if c.p_worse <= c.alpha:
            (broken if c.p_worse_best_case <= c.alpha else open_).append(
                f"significantly fewer resolved: {said} (one-sided p = {c.p_worse:.3g} <= alpha {c.alpha:g})"
                + ("" if c.p_worse_best_case <= c.alpha else "; the instances without a verdict could change that"))
        elif c.p_better <= c.alpha:
            notes.append(f"significantly more resolved: {said} (one-sided p = {c.p_better:.3g})")
    elif c is not None:
        open_.append("no instance has a model verdict in both this run and the baseline")
    if c is not None and max_new_failures is not None and len(c.newly_failing) > max_new_failures:
        broken.append(f"{len(c.newly_failing)} newly failing instance(s), more than "
                      f"--max-new-failures {max_new_failures}")
    if fail_on_suspicious and new.suspicious:
        broken.append(f"{len(new.suspicious)} instance(s) with a patch that touches test collection or configuration "
                      "(--fail-on-suspicious)")
    if unknown:
        open_.append(f"{len(unknown)} planned instance(s) have no verdict "
                     "(infrastructure failure, too slow, not attempted or unreadable)")
    if baseline_missing and c is None:
        open_.append("no baseline report was found to compare against")
    if not broken and not open_ and c is not None and c.compared and max_detectable_drop is not None \
            and (c.detectable_points is None or c.detectable_points > max_detectable_drop):
        could = "no drop at all" if c.detectable_points is None else f"only drops of {c.detectable_points:.1f} points"
        open_.append(f"this run could detect {could} (80% power), not the {max_detectable_drop:g} points of "
                     "--max-detectable-drop: a larger or more informative sample is needed")
    better = bool(notes)
    if broken:
        return Verdict(word=REGRESSION, reasons=broken + open_)
    if open_:
        return Verdict(word=INCONCLUSIVE, reasons=open_ + notes, better=better)
    return Verdict(word=PASS, reasons=notes, better=better)

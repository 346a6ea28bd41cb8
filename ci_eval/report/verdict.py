"""What a run's comparison makes of it: the gate (the rules a run is judged by, the same for
`aggregate`, `compare` and `ab`) and the verdict, pass, regression or inconclusive, with its cause."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ci_eval.contracts.report import Cause, Comparison, Report, Verdict
from ci_eval.report.compare import ALPHA, compare

DISAGREE = 0.01  # a history whose runs disagree this improbably is not used to call a regression


@dataclass(frozen=True)
class Gate:
    """The rules a run is judged by, one field per flag of `aggregate` and `compare`."""

    alpha: float = ALPHA
    fail_under: float | None = None
    max_new_failures: int | None = None
    max_detectable_drop: float | None = None
    fail_on_suspicious: bool = False
    baseline_missing: bool = False
    on_inconclusive: Literal["warn", "fail"] = "warn"
    push: int = 1  # which run of its pull request this is: each spends less of alpha


def judge(history: Sequence[Report], report: Report, gate: Gate) -> Report:
    """The report with its comparison against the history (when there is one) and its verdict."""
    comparison = compare(history, report, gate.alpha, gate.push) if history else None
    return report.model_copy(update={"comparison": comparison, "verdict": verdict(report, comparison, gate)})


def verdict(new: Report, comparison: Comparison | None, gate: Gate) -> Verdict:
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
    if gate.fail_under is not None and rate.rate < gate.fail_under:
        best = (rate.resolved + len(unknown)) / max(rate.planned, 1)
        cause: Cause = "limit" if best < gate.fail_under else "lost_verdicts"
        (broken if best < gate.fail_under else open_).setdefault(cause, []).append(
            f"resolve rate {rate.rate:.1%} is under --fail-under {gate.fail_under:.1%}"
            + ("" if best < gate.fail_under else f" (at most {best:.1%} with the instances without a verdict)"))
    c = comparison
    if c is not None:
        _judge_test(c, broken, open_, notes)
    if c is not None and gate.max_new_failures is not None and len(c.newly_failing) > gate.max_new_failures:
        broken.setdefault("limit", []).append(f"{len(c.newly_failing)} newly failing instance(s), more than "
                                              f"--max-new-failures {gate.max_new_failures}")
    if gate.fail_on_suspicious and new.suspicious:
        broken.setdefault("limit", []).append(
            f"{len(new.suspicious)} instance(s) with a patch that touches test collection or configuration "
            "(--fail-on-suspicious)")
    if c is None and unknown:  # nothing to weigh them against: a run alone with holes is no pass
        open_.setdefault("lost_verdicts", []).append(
            f"{len(unknown)} planned instance(s) have no verdict (infrastructure failure, too slow, not attempted or "
            "unreadable)")
    if gate.baseline_missing and c is None:
        open_.setdefault("lack_of_data", []).append("no baseline report was found to compare against")
    if not broken and not open_ and c is not None and c.compared and c.detectable_points is None:
        open_.setdefault("lack_of_data", []).append(
            "this run could detect no drop at all, even losing every resolve: compare more instances, or more "
            "informative ones")
    elif not broken and not open_ and c is not None and c.compared and gate.max_detectable_drop is not None \
            and c.detectable_points is not None and c.detectable_points > gate.max_detectable_drop:
        open_.setdefault("lack_of_data", []).append(
            f"this run could detect only drops of {c.detectable_points:.1f} points (80% power), not the "
            f"{gate.max_detectable_drop:g} points of "
            "--max-detectable-drop: a larger or more informative sample is needed")
    better = bool(notes)
    everything = [r for rs in (*broken.values(), *open_.values()) for r in rs]
    if broken:
        return Verdict(word="regression", cause=next(iter(broken)), reasons=everything)
    if open_:
        return Verdict(word="inconclusive", cause=next(iter(open_)), reasons=everything + notes, better=better)
    return Verdict(word="pass", reasons=notes, better=better)


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

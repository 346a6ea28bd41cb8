"""Compare two reports instance by instance, and turn that into a regression verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ci_eval.contracts import Report, read_report
from ci_eval.report.stats import mcnemar_exact


@dataclass
class Comparison:
    """Paired over the instances with a model verdict (resolved or a model failure) in both runs;
    the rest cannot say whether the model got better or worse and are listed apart."""

    base_rate: float
    new_rate: float
    common: int  # compared: a verdict on both sides
    newly_failing: list[str]
    newly_resolved: list[str]
    p_value: float
    no_verdict_new: list[str] = field(default_factory=list)  # infra failure, not attempted, unreadable here
    no_verdict_base: list[str] = field(default_factory=list)  # … in the baseline only
    only_in_one: list[str] = field(default_factory=list)  # planned by one run, not the other

    @property
    def delta(self) -> float:
        return self.new_rate - self.base_rate


PASS, REGRESSION, INCONCLUSIVE = "pass", "regression", "inconclusive"
EXIT_CODES = {PASS: 0, REGRESSION: 1, INCONCLUSIVE: 3}  # 2 is bad input


@dataclass
class Verdict:
    word: str
    reasons: list[str] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        return self.word == REGRESSION

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.word]


def load_report(path: Path) -> Report:
    """A report.json, read through its contract (an older report gets the newer fields' defaults)."""
    return read_report(path)


def compare(base: Report, new: Report) -> Comparison:
    """Paired comparison over the instances both runs planned and both judged."""
    was = {i: e.status.verdict for i, e in base.instances.items()}
    now = {i: e.status.verdict for i, e in new.instances.items()}
    both = sorted(set(was) & set(now))
    judged = [i for i in both if was[i] is not None and now[i] is not None]
    failing = [i for i in judged if was[i] and not now[i]]
    resolved = [i for i in judged if now[i] and not was[i]]
    return Comparison(
        base_rate=base.resolve_rate.rate, new_rate=new.resolve_rate.rate, common=len(judged),
        newly_failing=failing, newly_resolved=resolved, p_value=mcnemar_exact(len(failing), len(resolved)),
        no_verdict_new=[i for i in both if now[i] is None],
        no_verdict_base=[i for i in both if was[i] is None and now[i] is not None],
        only_in_one=sorted(set(was) ^ set(now)),
    )


def verdict(new: Report, comparison: Comparison | None, fail_under: float | None,
            max_new_failures: int | None, baseline_missing: bool = False, fail_on_suspicious: bool = False) -> Verdict:
    """`regression` when a limit is broken whatever the instances without a verdict would have
    been; `inconclusive` when they could decide it, when any planned instance of this run has
    no verdict (a crashed shard is never a pass, nor a regression), or when a baseline was wanted
    and none was found; else `pass`."""
    unknown = [i for i, e in new.instances.items() if e.status.verdict is None]
    rate = new.resolve_rate
    broken: list[str] = []
    open_: list[str] = []
    if fail_under is not None and rate.rate < fail_under:
        best = (rate.resolved + len(unknown)) / max(rate.planned, 1)
        (broken if best < fail_under else open_).append(
            f"resolve rate {rate.rate:.1%} is under --fail-under {fail_under:.1%}"
            + ("" if best < fail_under else f" (at most {best:.1%} with the instances without a verdict)"))
    if comparison is not None and max_new_failures is not None and len(comparison.newly_failing) > max_new_failures:
        broken.append(f"{len(comparison.newly_failing)} newly failing instance(s), more than "
                      f"--max-new-failures {max_new_failures}")
    if fail_on_suspicious and new.suspicious:
        broken.append(f"{len(new.suspicious)} instance(s) with a patch that touches test collection or configuration "
                      "(--fail-on-suspicious)")
    if unknown:
        open_.append(f"{len(unknown)} planned instance(s) have no verdict "
                     "(infrastructure failure, too slow, not attempted or unreadable)")
    if baseline_missing and comparison is None:
        open_.append("no baseline report was found to compare against")
    if broken:
        return Verdict(REGRESSION, broken + open_)
    return Verdict(INCONCLUSIVE, open_) if open_ else Verdict(PASS)

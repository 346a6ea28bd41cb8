"""Compare two reports instance by instance, and turn that into a regression verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_eval.errors import InputError
from ci_eval.report import REPORT_SCHEMA_VERSION
from ci_eval.report.stats import mcnemar_exact


@dataclass
class Comparison:
    base_rate: float
    new_rate: float
    common: int
    newly_failing: list[str]
    newly_resolved: list[str]
    p_value: float

    @property
    def delta(self) -> float:
        return self.new_rate - self.base_rate


@dataclass
class Verdict:
    regression: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def word(self) -> str:
        return "fail" if self.regression else "pass"


def load_report(path: Path) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read report {path}: {exc}") from None
    if report.get("schema_version") != REPORT_SCHEMA_VERSION or "instances" not in report:
        raise InputError(f"{path} is not a ci-eval report (schema {REPORT_SCHEMA_VERSION})")
    return report


def compare(base: dict[str, Any], new: dict[str, Any]) -> Comparison:
    """Paired comparison over the instances both runs planned."""
    common = sorted(set(base["instances"]) & set(new["instances"]))
    was = {i: base["instances"][i]["status"] == "resolved" for i in common}
    now = {i: new["instances"][i]["status"] == "resolved" for i in common}
    failing = [i for i in common if was[i] and not now[i]]
    resolved = [i for i in common if now[i] and not was[i]]
    return Comparison(
        base_rate=base["resolve_rate"]["rate"], new_rate=new["resolve_rate"]["rate"], common=len(common),
        newly_failing=failing, newly_resolved=resolved, p_value=mcnemar_exact(len(failing), len(resolved)),
    )


def verdict(new: dict[str, Any], comparison: Comparison | None, fail_under: float | None,
            max_new_failures: int | None) -> Verdict:
    reasons = []
    rate = new["resolve_rate"]["rate"]
    if fail_under is not None and rate < fail_under:
        reasons.append(f"resolve rate {rate:.1%} is under --fail-under {fail_under:.1%}")
    if comparison is not None and max_new_failures is not None and len(comparison.newly_failing) > max_new_failures:
        reasons.append(f"{len(comparison.newly_failing)} newly failing instance(s), more than "
                       f"--max-new-failures {max_new_failures}")
    return Verdict(bool(reasons), reasons)

"""`ci-eval aggregate`: shard folders in; report.json, junit.xml, summary.md and a verdict out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ci_eval.contracts import Comparison, Report, Verdict
from ci_eval.history import load_history
from ci_eval.layout import COMMENT, JUNIT, REPORT, SUMMARY
from ci_eval.report.build import build_report
from ci_eval.report.compare import ALPHA, compare, verdict
from ci_eval.report.junit import to_junit
from ci_eval.report.markdown import Shown, to_comment, to_markdown
from ci_eval.report.merge import find_shards, merge


@dataclass(frozen=True)
class Gate:
    """The rules a run is judged by, the same for `aggregate` and `compare`."""

    alpha: float = ALPHA
    fail_under: float | None = None
    max_new_failures: int | None = None
    max_detectable_drop: float | None = None
    fail_on_suspicious: bool = False
    baseline_missing: bool = False
    on_inconclusive: Literal["warn", "fail"] = "warn"
    push: int = 1  # which run of its pull request this is: each spends less of alpha


@dataclass
class Aggregated:
    report: Report
    comparison: Comparison | None
    verdict: Verdict
    summary: str
    comment: str
    folder: Path = Path()  # where its files went (none for `compare`)

    def outputs(self) -> dict[str, object]:
        """The headline figures and the verdict, named as every ci-eval action names its outputs."""
        rate, c = self.report.resolve_rate, self.comparison
        return {
            "resolved": rate.resolved, "planned": rate.planned, "rate": rate.rate,
            "ci-low": rate.ci95[0], "ci-high": rate.ci95[1],
            "infrastructure-failures": self.report.infrastructure_failures.count,
            "no-verdict": len(self.report.no_verdict),
            "newly-failing": len(c.newly_failing) if c else "", "newly-resolved": len(c.newly_resolved) if c else "",
            "p-worse": c.p_worse if c else "",
            "detectable-drop": (c.detectable_points if c.detectable_points is not None else "none") if c else "",
            "verdict": self.verdict.word, "verdict-cause": self.verdict.cause, "report": str(self.folder / REPORT),
        }


def judge(history: Sequence[Report], report: Report, gate: Gate, logs_url: str = "") -> Aggregated:
    """The comparison, the verdict and the summary of one report against a history: what both
    `aggregate` and `compare` give."""
    comparison = compare(history, report, gate.alpha, gate.push) if history else None
    judged = verdict(report, comparison, fail_under=gate.fail_under, max_new_failures=gate.max_new_failures,
                     baseline_missing=gate.baseline_missing, fail_on_suspicious=gate.fail_on_suspicious,
                     max_detectable_drop=gate.max_detectable_drop)
    report = report.model_copy(update={"comparison": comparison, "verdict": judged})
    shown = Shown(logs_url=logs_url, on_inconclusive=gate.on_inconclusive)
    return Aggregated(report, comparison, judged, to_markdown(report, shown), to_comment(report, shown))


def aggregate(paths: Sequence[Path], out: Path, *, allow_partial: bool = False, baselines: Sequence[Path] = (),
              gate: Gate | None = None, logs_url: str = "") -> Aggregated:
    history, aside = load_history(baselines)
    report = build_report(merge(find_shards(paths), allow_partial))
    report = report.model_copy(update={"warnings": [*report.warnings, *aside]})
    result = replace(judge(history, report, gate or Gate(), logs_url), folder=out)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(result.report.model_dump_json(indent=1) + "\n")
    (out / JUNIT).write_text(to_junit(result.report))
    (out / SUMMARY).write_text(result.summary)
    (out / COMMENT).write_text(result.comment)
    return result

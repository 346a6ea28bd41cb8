"""`ci-eval aggregate`, wired: shard folders read, merged, built into a report, judged against the
baselines, and written as report.json, junit.xml, summary.md and comment.md. Each step is its own
module; this one only joins them and writes the files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ci_eval.contracts.report import REPORT, Comparison, Report, Verdict
from ci_eval.history import load_history
from ci_eval.report.build import build_report
from ci_eval.report.junit import to_junit
from ci_eval.report.markdown import SummaryOptions, to_comment, to_markdown
from ci_eval.report.merge import merge
from ci_eval.report.verdict import Gate, judge
from ci_eval.shard_folder import find_shards

JUNIT = "junit.xml"
SUMMARY = "summary.md"
COMMENT = "comment.md"  # the pull-request comment, for the comment action


@dataclass(frozen=True)
class Aggregated:
    """A judged report with its two Markdown faces, and where its files went."""

    report: Report
    summary: str
    comment: str
    folder: Path = Path()

    @property
    def comparison(self) -> Comparison | None:
        return self.report.comparison

    @property
    def verdict(self) -> Verdict:
        assert self.report.verdict is not None  # judged
        return self.report.verdict

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


def judged(history: Sequence[Report], report: Report, gate: Gate, logs_url: str = "") -> Aggregated:
    """The report judged against the history, with its summary and its comment: what `aggregate`,
    `compare` and `ab` give."""
    report = judge(history, report, gate)
    options = SummaryOptions(logs_url=logs_url, on_inconclusive=gate.on_inconclusive)
    return Aggregated(report, to_markdown(report, options), to_comment(report, options))


def aggregate(paths: Sequence[Path], out: Path, *, allow_partial: bool = False, baselines: Sequence[Path] = (),
              gate: Gate | None = None, logs_url: str = "") -> Aggregated:
    history, aside = load_history(baselines)
    report = build_report(merge(find_shards(paths), allow_partial))
    report = report.model_copy(update={"warnings": [*report.warnings, *aside]})
    result = judged(history, report, gate or Gate(), logs_url)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(result.report.model_dump_json(indent=1) + "\n")
    (out / JUNIT).write_text(to_junit(result.report))
    (out / SUMMARY).write_text(result.summary)
    (out / COMMENT).write_text(result.comment)
    return replace(result, folder=out)

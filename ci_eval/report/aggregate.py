"""`ci-eval aggregate`: shard folders in; report.json, junit.xml, summary.md and a verdict out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ci_eval.contracts import Report
from ci_eval.report.build import build_report
from ci_eval.report.compare import Comparison, Verdict, compare, load_report, verdict
from ci_eval.report.junit import to_junit
from ci_eval.report.markdown import to_comment, to_markdown
from ci_eval.report.merge import find_shards, merge


@dataclass
class Aggregated:
    report: Report
    comparison: Comparison | None
    verdict: Verdict
    summary: str
    folder: Path

    def outputs(self) -> dict[str, object]:
        """The headline figures and the verdict, named as every ci-eval action names its outputs."""
        rate, c = self.report.resolve_rate, self.comparison
        return {
            "resolved": rate.resolved, "planned": rate.planned, "rate": rate.rate,
            "ci-low": rate.ci95[0], "ci-high": rate.ci95[1],
            "infrastructure-failures": self.report.infrastructure_failures.count,
            "no-verdict": len(self.report.no_verdict),
            "newly-failing": len(c.newly_failing) if c else "", "newly-resolved": len(c.newly_resolved) if c else "",
            "verdict": self.verdict.word, "report": str(self.folder / "report.json"),
        }


def aggregate(paths: Sequence[Path], out: Path, *, allow_partial: bool = False, baseline: Path | None = None,
              fail_under: float | None = None, max_new_failures: int | None = None,
              baseline_missing: bool = False, fail_on_suspicious: bool = False) -> Aggregated:
    base = load_report(baseline) if baseline else None  # bad input fails before any work
    report = build_report(merge(find_shards(paths), allow_partial))
    comparison = compare(base, report) if base else None
    judged = verdict(report, comparison, fail_under, max_new_failures, baseline_missing, fail_on_suspicious)
    summary = to_markdown(report, comparison, judged)

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.model_dump_json(indent=1) + "\n")
    (out / "junit.xml").write_text(to_junit(report))
    (out / "summary.md").write_text(summary)
    (out / "comment.md").write_text(to_comment(report, comparison, judged))
    return Aggregated(report, comparison, judged, summary, out)

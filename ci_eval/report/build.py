"""report.json: what a merged run amounts to, in one versioned document."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ci_eval.contracts import REPORT_VERSION, Report
from ci_eval.layout import APPLY_LOG, TEST_LOG, log_dir
from ci_eval.report.merge import Merged
from ci_eval.report.stats import pass_at_k, wilson
from ci_eval.results import INFRA_FAILURES, MODEL_FAILURES, NOT_ATTEMPTED, TOO_SLOW, Record

LOG_TAIL_LINES, LOG_TAIL_BYTES = 30, 4096  # of a failing instance's log, into the report and JUnit
UNREADABLE = "unreadable"  # its only result line is damaged: neither a verdict nor "not attempted"
# Instances without a model verdict: nothing can be said of the model from them.
NO_VERDICT = (*INFRA_FAILURES, TOO_SLOW, NOT_ATTEMPTED, UNREADABLE)


def repo_from_id(instance_id: str) -> str:
    """SWE-bench ids are owner__name-number; used where no record names the repo."""
    return instance_id.rsplit("-", 1)[0].replace("__", "/")


def build_report(merged: Merged) -> Report:
    damaged = {u.instance_id for u in merged.unreadable if u.instance_id}
    instances = {iid: _instance(iid, merged, iid in damaged) for iid in merged.planned}
    statuses = Counter(entry["status"] for entry in instances.values())
    planned = len(instances)
    resolved = statuses["resolved"]
    low, high = wilson(resolved, planned)

    per_repo: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in instances.values():
        per_repo[entry["repo"]][entry["status"]] += 1
    records = list(merged.records.values())
    report: dict[str, Any] = {
        "schema_version": REPORT_VERSION,
        "identity": merged.identity,
        "shards": {
            "of": merged.of,
            "present": sorted(merged.shards),
            "missing": merged.missing,
            "attempts": {str(n): run.attempt for n, run in sorted(merged.shards.items())},
        },
        "totals": {
            "planned": planned,
            "attempted": planned - statuses[NOT_ATTEMPTED],
            "by_status": dict(sorted(statuses.items())),
        },
        "resolve_rate": {"resolved": resolved, "planned": planned, "rate": _rate(resolved, planned),
                         "ci95": [round(low, 4), round(high, 4)]},
        "model_failures": {s: statuses[s] for s in MODEL_FAILURES},
        "infrastructure_failures": {
            "count": sum(statuses[s] for s in INFRA_FAILURES),
            "instances": sorted(i for i, e in instances.items() if e["status"] in INFRA_FAILURES),
        },
        "per_repo": {
            repo: {"planned": sum(c.values()), "resolved": c["resolved"],
                   "rate": _rate(c["resolved"], sum(c.values()))}
            for repo, c in sorted(per_repo.items())
        },
        "no_verdict": sorted(i for i, e in instances.items() if e["status"] in NO_VERDICT),
        "unreadable": merged.unreadable,
        "usage": _usage(records),
        "samples": merged.samples,
        "warnings": merged.warnings,
        "instances": instances,
        "suspicious": sorted(i for i, e in instances.items() if e.get("suspicious")),
    }
    if merged.samples > 1:
        report["pass_at_k"] = {
            str(k): round(sum(pass_at_k(merged.samples, e["resolved_samples"], k) for e in instances.values())
                          / max(planned, 1), 4)
            for k in range(1, merged.samples + 1)
        }
    return Report.model_validate(report)


def _usage(records: list[Record]) -> dict[str, Any]:
    sent = sum(r.agent.sent_chars for r in records)
    reported = [r.agent for r in records if r.agent.cached_tokens is not None]
    told = sum(a.prompt_tokens for a in reported)
    cached = sum(a.cached_tokens or 0 for a in reported)
    return {
        "prompt_tokens": sum(r.agent.prompt_tokens for r in records),
        "completion_tokens": sum(r.agent.completion_tokens for r in records),
        "model_seconds": round(sum(r.agent.model_seconds for r in records), 3),
        "repeated_prefix_share": round(sum(r.agent.repeated_chars for r in records) / sent, 4) if sent else None,
        "cached_tokens": cached if reported else None,
        "cached_share": round(cached / told, 4) if told else None,
        "agent_seconds": round(sum(r.timings.agent for r in records), 3),
        "eval_seconds": round(sum(r.timings.eval for r in records), 3),
        "total_seconds": round(sum(r.timings.total for r in records), 3),
    }


def _instance(iid: str, merged: Merged, damaged: bool) -> dict[str, Any]:
    tries = [r for s in range(merged.samples) if (r := merged.records.get((iid, s))) is not None]
    first: Record | None = merged.records.get((iid, 0)) or (tries[0] if tries else None)
    if first is None:
        status = UNREADABLE if damaged else NOT_ATTEMPTED
        return {"repo": repo_from_id(iid), "status": status, "samples": 0, "resolved_samples": 0,
                "time": 0.0, "error": None, "failing_tests": [], "exit_reason": None, "steps": 0, "tokens": 0,
                "log_tail": ""}
    failing = first.tests.FAIL_TO_PASS.failure + first.tests.PASS_TO_PASS.failure
    return {
        "repo": first.repo,
        "status": first.status,
        "samples": len(tries),
        "resolved_samples": sum(r.status == "resolved" for r in tries),
        "time": round(first.timings.total, 3),
        "error": first.error.model_dump() if first.error else None,
        "failing_tests": failing,
        "attempt": first.attempt,
        "exit_reason": first.agent.exit_reason,  # None when the patch came from predictions
        "steps": first.agent.steps,
        "tokens": first.agent.prompt_tokens + first.agent.completion_tokens,
        "log_tail": "" if first.status == "resolved" else _log_tail(merged.folders.get(iid), iid),
        "suspicious": first.suspicious,
    }


def _log_tail(folder: Path | None, iid: str) -> str:
    """The end of what says why it failed: the test log, else the patch-apply log."""
    if folder is None:
        return ""
    logs = log_dir(folder, iid, 0)
    for name in (TEST_LOG, APPLY_LOG):
        path = logs / name
        if path.is_file():
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
                text = f.read().decode("utf-8", errors="replace")
            return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
    return ""


def _rate(k: int, n: int) -> float:
    return round(k / n, 4) if n else 0.0

"""report.json: what a merged run amounts to, in one versioned document, built from the typed
records (contracts.report.Report and its parts): pure, from the merge alone."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from ci_eval.contracts.report import (
    InfraFailures,
    InstanceResult,
    RepoResult,
    Report,
    ResolveRate,
    ShardsSeen,
    Totals,
    UsageTotals,
)
from ci_eval.contracts.shard import Record
from ci_eval.contracts.status import INFRA_FAILURES, MODEL_FAILURES, NO_VERDICT, Status
from ci_eval.report.merge import Merged


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default); sound at 0 and n, unlike Wald."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} epochs, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def repo_from_id(instance_id: str) -> str:
    """SWE-bench ids are owner__name-number; used where no record names the repo."""
    return instance_id.rsplit("-", 1)[0].replace("__", "/")


def build_report(merged: Merged) -> Report:
    damaged = {u.instance_id for u in merged.unreadable if u.instance_id}
    instances = {iid: _instance(iid, merged, iid in damaged) for iid in merged.planned}
    statuses = Counter(entry.status for entry in instances.values())
    planned = len(instances)
    resolved = statuses[Status.RESOLVED]
    low, high = wilson(resolved, planned)
    return Report(
        identity=merged.identity,
        environment=merged.environment,
        shards=ShardsSeen(of=merged.of, present=sorted(merged.shards), missing=merged.missing,
                          run_attempts={str(n): run.run_attempt for n, run in sorted(merged.shards.items())}),
        totals=Totals(planned=planned, attempted=planned - statuses[Status.NOT_ATTEMPTED],
                      by_status=dict(sorted(statuses.items()))),
        resolve_rate=ResolveRate(resolved=resolved, planned=planned, rate=_rate(resolved, planned),
                                 ci95=(round(low, 4), round(high, 4))),
        model_failures={s: statuses[s] for s in MODEL_FAILURES},
        infrastructure_failures=InfraFailures(count=sum(statuses[s] for s in INFRA_FAILURES),
                                              instances=_having(instances, INFRA_FAILURES)),
        per_repo=_per_repo(instances),
        no_verdict=_having(instances, NO_VERDICT),
        unreadable=merged.unreadable,
        usage=_usage(list(merged.records.values())),
        epochs=merged.epochs,
        warnings=merged.warnings,
        instances=instances,
        pass_at_k=_pass_at_k(instances, merged.epochs),
        suspicious=sorted(i for i, e in instances.items() if e.suspicious),
        sample=merged.sample,
        finished_at=max((r.finished_at for r in merged.records.values()), default=""),
    )


def _having(instances: dict[str, InstanceResult], statuses: tuple[Status, ...]) -> list[str]:
    return sorted(i for i, e in instances.items() if e.status in statuses)


def _per_repo(instances: dict[str, InstanceResult]) -> dict[str, RepoResult]:
    by_repo: dict[str, Counter[Status]] = defaultdict(Counter)
    for entry in instances.values():
        by_repo[entry.repo][entry.status] += 1
    return {repo: RepoResult(planned=c.total(), resolved=c[Status.RESOLVED], rate=_rate(c[Status.RESOLVED], c.total()))
            for repo, c in sorted(by_repo.items())}


def _pass_at_k(instances: dict[str, InstanceResult], epochs: int) -> dict[str, float] | None:
    if epochs <= 1:
        return None
    n = max(len(instances), 1)
    return {str(k): round(sum(pass_at_k(epochs, e.resolved_epochs, k) for e in instances.values()) / n, 4)
            for k in range(1, epochs + 1)}


def _usage(records: list[Record]) -> UsageTotals:
    sent = sum(r.agent.sent_chars for r in records)
    reported = [r.agent for r in records if r.agent.cached_tokens is not None]
    told = sum(a.prompt_tokens for a in reported)
    cached = sum(a.cached_tokens or 0 for a in reported)
    return UsageTotals(
        prompt_tokens=sum(r.agent.prompt_tokens for r in records),
        completion_tokens=sum(r.agent.completion_tokens for r in records),
        model_seconds=round(sum(r.agent.model_seconds for r in records), 3),
        repeated_prefix_share=round(sum(r.agent.repeated_chars for r in records) / sent, 4) if sent else None,
        cached_tokens=cached if reported else None,
        cached_share=round(cached / told, 4) if told else None,
        reprocessed_steps=sum(r.agent.reprocessed_steps for r in records),
        reprocessed_instances=[r.instance_id for r in sorted(records, key=lambda r: (-r.agent.reprocessed_steps,
                                                                                     r.instance_id))
                               if r.agent.reprocessed_steps][:10],
        agent_seconds=round(sum(r.timings.agent for r in records), 3),
        eval_seconds=round(sum(r.timings.eval for r in records), 3),
        total_seconds=round(sum(r.timings.total for r in records), 3),
    )


def _instance(iid: str, merged: Merged, damaged: bool) -> InstanceResult:
    tries = [r for e in range(merged.epochs) if (r := merged.records.get((iid, e))) is not None]
    first: Record | None = merged.records.get((iid, 0)) or (tries[0] if tries else None)
    if first is None:
        return InstanceResult(repo=repo_from_id(iid), status=Status.UNREADABLE if damaged else Status.NOT_ATTEMPTED)
    return InstanceResult(
        repo=first.repo,
        status=first.status,
        epochs=len(tries),
        resolved_epochs=sum(r.status == Status.RESOLVED for r in tries),
        time=round(first.timings.total, 3),
        error=first.error,
        failing_tests=first.tests.FAIL_TO_PASS.failure + first.tests.PASS_TO_PASS.failure,
        attempt=first.attempt,
        exit_reason=first.agent.exit_reason,  # None when the patch came from predictions
        steps=first.agent.steps,
        tokens=first.agent.prompt_tokens + first.agent.completion_tokens,
        log_tail="" if first.status == Status.RESOLVED else merged.log_tails.get(iid, ""),
        suspicious=first.suspicious,
    )


def _rate(k: int, n: int) -> float:
    return round(k / n, 4) if n else 0.0

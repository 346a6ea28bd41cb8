"""The Markdown job summary: headline, verdict, comparison, breakdowns, never over 1 MiB."""

from __future__ import annotations

from ci_eval.contracts import Report, Status
from ci_eval.report.compare import Comparison, Verdict

SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses step summaries above 1 MiB
_LISTED = 50
_SLOWEST = 10
MANY_TOO_SLOW = 0.1  # this share of attempts cut by the wall clock makes the headline warn


def to_markdown(report: Report, comparison: Comparison | None = None, verdict: Verdict | None = None,
                limit: int = SUMMARY_LIMIT) -> str:
    parts = [headline(report)]
    if verdict is not None:
        parts.append(f"**Verdict: {verdict.word}**" + "".join(f"\n- {r}" for r in verdict.reasons) + "\n")
    if report.warnings:
        parts.append("".join(f"> [!WARNING]\n> {w}\n\n" for w in report.warnings))
    if comparison is not None:
        parts.append(comparison_section(comparison))
    parts += [suspicious_section(report), status_section(report), details_section(report), repo_section(report),
              model_time_section(report), slowest_section(report)]
    return truncate("\n".join(parts), limit)


COMMENT_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters


def to_comment(report: Report, comparison: Comparison | None, verdict: Verdict) -> str:
    """The pull-request comment: headline, verdict, before and after; the rest is in the summary."""
    parts = [headline(report), f"**Verdict: {verdict.word}**" + "".join(f"\n- {r}" for r in verdict.reasons) + "\n"]
    if comparison is not None:
        parts.append(comparison_section(comparison))
    text = "\n".join(parts)
    if len(text) <= COMMENT_LIMIT:
        return text
    return text[: text.rfind("\n", 0, COMMENT_LIMIT)] + "\n\n_… cut; see the job summary._\n"


def headline(report: Report) -> str:
    rate = report.resolve_rate
    low, high = rate.ci95
    ident = report.identity
    unknown = len(report.no_verdict)
    lines = [
        f"## ci-eval: {rate.resolved} of {rate.planned} resolved ({rate.rate:.1%}, 95% CI {low:.1%} to {high:.1%})",
        "",
        f"`{ident.get('model')}` on `{ident.get('dataset')}` ({ident.get('split')}), "
        f"{report.shards.of} shard(s), config `{ident.get('config_hash')}`"
        + (f", **{unknown} without a verdict** (infrastructure failure, too slow, not attempted or unreadable; "
           "not counted as wrong answers)" if unknown else ""),
        "",
    ]
    slow = report.totals.by_status.get(Status.TOO_SLOW, 0)
    if slow:
        lines += [f"**{slow} of {rate.planned} attempts were too slow**: the agent's wall clock (--agent-timeout) "
                  "cut them before the step limit, so they say how fast the runner was, not what the model can do; "
                  "they have no verdict and are not compared.", ""]
        if slow >= MANY_TOO_SLOW * rate.planned:
            lines += ["> [!WARNING]\n> So many attempts were cut that this run says little: give the agent more time "
                      "(--agent-timeout), a faster runner, or fewer workers per model.", ""]
    if report.pass_at_k:
        lines.append(" · ".join(f"pass@{k} {v:.1%}" for k, v in report.pass_at_k.items()) + "\n")
    return "\n".join(lines)


def comparison_section(c: Comparison) -> str:
    out = [
        "### Against the baseline",
        "",
        "| | baseline | this run | change |",
        "| --- | ---: | ---: | ---: |",
        f"| resolve rate | {c.base_rate:.1%} | {c.new_rate:.1%} | {c.delta * 100:+.1f} pp |",
        "",
        f"{len(c.newly_failing)} newly failing, {len(c.newly_resolved)} newly resolved of {c.common} "
        f"instances with a verdict in both runs (exact McNemar test, p = {c.p_value:.3g}).",
        "",
    ]
    apart = (("Newly failing", c.newly_failing), ("Newly resolved", c.newly_resolved),
             ("Not compared, no verdict in this run", c.no_verdict_new),
             ("Not compared, no verdict in the baseline", c.no_verdict_base),
             ("Not compared, planned by one run only", c.only_in_one))
    for title, ids in apart:
        if ids:
            shown = ", ".join(f"`{i}`" for i in ids[:_LISTED]) + (" …" if len(ids) > _LISTED else "")
            out += [f"**{title}:** {shown}", ""]
    return "\n".join(out)


def suspicious_section(report: Report) -> str:
    """Patches that touch how the tests are collected or judged: graded as the official harness
    grades them, named here so that a person looks."""
    if not report.suspicious:
        return ""
    rows = [f"| `{iid}` | {report.instances[iid].status} | {_cell('; '.join(report.instances[iid].suspicious))} |"
            for iid in report.suspicious[:_LISTED]]
    return "\n".join(["### Suspicious patches", "", "These patches touch test collection or configuration; their "
                      "verdict is the official harness's, but read them.", "", "| instance | status | touches |",
                      "| --- | --- | --- |", *rows, ""])


def status_section(report: Report) -> str:
    rows = [f"| {status} | {n} |" for status, n in report.totals.by_status.items()]
    return "\n".join(["### Status", "", "| status | instances |", "| --- | ---: |", *rows, ""])


def details_section(report: Report) -> str:
    """Every instance that did not resolve, folded: why (status, error, failing tests), how the
    agent's attempt ended, what it cost; infrastructure apart from the model's failures."""
    groups: dict[str, list[str]] = {"Model failures": [], "Too slow (no verdict)": [], "Without a verdict": []}
    unknown = set(report.no_verdict)
    for iid, e in report.instances.items():
        if e.status == Status.RESOLVED:
            continue
        why = e.error.message if e.error else ", ".join(f"`{t}`" for t in e.failing_tests[:5])
        agent = f"{e.exit_reason} after {e.steps} steps, {e.tokens:,} tokens" if e.exit_reason else ""
        row = f"| `{iid}` | {e.status} | {_cell(why)} | {_cell(agent)} | {e.time:.0f} s |"
        group = "Too slow (no verdict)" if e.status == Status.TOO_SLOW else "Without a verdict" if iid in unknown \
            else "Model failures"
        groups[group].append(row)
    out = []
    for title, rows in groups.items():
        if rows:
            out += [f"<details><summary>{title} ({len(rows)})</summary>", "",
                    "| instance | status | why | agent | time |", "| --- | --- | --- | --- | ---: |", *rows, "",
                    "</details>", ""]
    return "\n".join(out)


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    one_line = " ".join(str(text).split())
    return (one_line[:200] + "…" if len(one_line) > 200 else one_line).replace("|", "\\|")


def repo_section(report: Report) -> str:
    rows = [f"| {repo} | {r.resolved} | {r.planned} | {r.rate:.1%} |" for repo, r in report.per_repo.items()]
    return "\n".join(["### Per repository", "", "| repository | resolved | planned | rate |",
                      "| --- | ---: | ---: | ---: |", *rows, ""])


def model_time_section(report: Report) -> str:
    """Where the model's time went, and how much of each request a prompt cache could reuse."""
    u = report.usage
    if not u.prompt_tokens:
        return ""
    rows = [f"| prompt tokens | {u.prompt_tokens:,} |", f"| completion tokens | {u.completion_tokens:,} |",
            f"| model seconds | {u.model_seconds:,.0f} |"]
    if u.repeated_prefix_share is not None:
        rows.append(f"| request text repeating the previous request's start | {u.repeated_prefix_share:.1%} |")
    rows.append(f"| prompt tokens the server took from its cache | {u.cached_share:.1%} |" if u.cached_share is not None
                else "| prompt tokens the server took from its cache | not reported by the server |")
    return "\n".join(["### Model time", "", "| | |", "| --- | ---: |", *rows, ""])


def slowest_section(report: Report) -> str:
    slow = sorted(report.instances.items(), key=lambda kv: -kv[1].time)[:_SLOWEST]
    rows = [f"| `{iid}` | {e.status} | {e.time:.1f} s |" for iid, e in slow if e.time > 0]
    return "\n".join(["### Slowest instances", "", "| instance | status | time |", "| --- | --- | ---: |", *rows, ""])


def truncate(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    note = "\n\n_… summary truncated to stay under GitHub's 1 MiB limit; see report.json for everything._\n"
    cut = data[: limit - len(note.encode())].decode(errors="ignore")
    return cut[: cut.rfind("\n") + 1] + note

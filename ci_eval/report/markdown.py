"""The Markdown job summary and pull-request comment: the answer in the first line, then what
changed and why, then the breakdowns; never over GitHub's limits. Every string that came from an
artifact is shown through `text` or `code`: one line, no control characters, no Markdown or HTML
of its own, no mention."""

from __future__ import annotations

from dataclasses import dataclass

from ci_eval.contracts.report import Comparison, InstanceResult, Report, Verdict
from ci_eval.contracts.status import Status
from ci_eval.shard_folder import LOGS, epoch_folder
from ci_eval.untrusted import loggable, markdown_text

SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses step summaries above 1 MiB
COMMENT_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters
_LISTED = 50
_SLOWEST = 10
MANY_TOO_SLOW = 0.1  # this share of attempts cut by the wall clock makes the headline warn
SIGNS = {"pass": "✅", "regression": "❌", "inconclusive": "⚠️"}
OFFICIAL_DATASET = "SWE-bench/SWE-bench_Verified"
CAUSES = {"lost_verdicts": "the run lost verdicts", "lack_of_data": "lack of data",
          "unstable_history": "the baseline runs disagree", "test": "the test", "limit": "a limit"}


@dataclass(frozen=True)
class SummaryOptions:
    """What the summary says beyond the report: where the logs are, and what inconclusive does."""

    logs_url: str = ""
    on_inconclusive: str = "warn"


def to_markdown(report: Report, options: SummaryOptions = SummaryOptions(), limit: int = SUMMARY_LIMIT) -> str:
    c = report.comparison
    parts = [answer(report), context(report), verdict_section(report.verdict, options)]
    if report.warnings:
        parts.append("".join(f"> [!WARNING]\n> {text(w, 500)}\n\n" for w in report.warnings))
    if c is not None:
        parts += [changes_section(report, c, options), chart(c), apart_section(report, c)]
    parts += [suspicious_section(report), status_section(report), details_section(report, options),
              repo_section(report), model_time_section(report), slowest_section(report), glossary()]
    return truncate("\n".join(p for p in parts if p), limit)


def to_comment(report: Report, options: SummaryOptions = SummaryOptions()) -> str:
    """The pull-request comment: the answer, the verdict's reasons, what changed; the rest is in the summary."""
    c = report.comparison
    parts = [answer(report), context(report), verdict_section(report.verdict, options)]
    if c is not None:
        parts += [changes_section(report, c, options), chart(c)]
    parts.append(glossary())
    body = "\n".join(p for p in parts if p)
    if len(body) <= COMMENT_LIMIT:
        return body
    return body[: body.rfind("\n", 0, COMMENT_LIMIT)] + "\n\n_… cut; see the job summary._\n"


def answer(report: Report) -> str:
    """One line: the sign, the verdict, the paired before → after, the full set's estimated change
    and what this run could have detected."""
    word: str = report.verdict.word if report.verdict else "no verdict"
    c, rate = report.comparison, report.resolve_rate
    if c is None and word == "pass":  # nothing was compared: a neutral line, never a green one
        return (f"## · no baseline yet — ci-eval: {rate.resolved} of {rate.planned} resolved ({rate.rate:.1%}, "
                f"95% CI {rate.ci95[0]:.1%} to {rate.ci95[1]:.1%})\n")
    if report.verdict is not None and report.verdict.cause == "lost_verdicts":
        word += " (lost verdicts)"
    head = f"## {SIGNS.get(word.split()[0], '·')} {word} — ci-eval:"
    if c is None or not c.compared:
        return (f"{head} {rate.resolved} of {rate.planned} resolved ({rate.rate:.1%}, 95% CI {rate.ci95[0]:.1%} to "
                f"{rate.ci95[1]:.1%})" + (" · nothing to compare with" if c is not None else "") + "\n")
    parts = [f"{head} {c.base_rate:.1%} → {c.new_rate:.1%} on the {c.compared} instances both sides judged"]
    f = c.full_set
    if f is not None and f.sampled:
        parts.append(f"full set {points(f.change)} points (95% CI {points(f.ci95[0])} to {points(f.ci95[1])})")
    elif f is not None:
        parts.append(f"full set {points(f.change)} points")
    parts.append("could detect no drop at all" if c.detectable_points is None
                 else f"could detect a drop of {c.detectable_points:.1f} points")
    return " · ".join(parts) + "\n"


def points(share: float) -> str:
    return f"{share * 100:+.1f}"


def context(report: Report) -> str:
    ident = report.identity
    unknown = len(report.no_verdict)
    lines = [f"{code(ident.get('model'))} on {code(ident.get('dataset'))} ({text(ident.get('split'))}), "
             f"{report.shards.of} shard(s), config {code(ident.get('config_hash'))}"
             + (f", agent {code(ident['agent'])}" if ident.get("agent") else "")
             + (f", **{unknown} without a verdict** (infrastructure failure, too slow, not attempted or unreadable; "
                "not counted as wrong answers)" if unknown else ""), ""]
    if ident.get("dataset") != OFFICIAL_DATASET or not ident.get("revision"):
        lines += [f"> [!NOTE]\n> Not the published {OFFICIAL_DATASET} at a pinned revision (dataset "
                  f"{code(ident.get('dataset'))}, revision {code(ident.get('revision') or 'not pinned')}): "
                  "the figures are not comparable with published SWE-bench Verified results.", ""]
    design = report.sample
    if design is not None and design.kind != "all":
        how = (f"an informative sample drawn from {design.baseline_runs} baseline run(s), stratified: "
               + ", ".join(f"{len(s.chosen)} of {s.population} {text(s.name)}" for s in design.strata)
               if design.kind == "informative" else
               f"a random sample of {len(design.strata[0].chosen)} of {design.population} (no baseline history "
               "to stratify by)")
        lines += [f"Instances: {how}.", ""]
    slow = report.totals.by_status.get(Status.TOO_SLOW, 0)
    if slow:
        lines += [f"**{slow} of {report.resolve_rate.planned} attempts were too slow**: the agent's wall clock "
                  "(--agent-timeout) cut them before the step limit, so they say how fast the runner was, not what the "
                  "model can do; they have no verdict and are not compared.", ""]
        if slow >= MANY_TOO_SLOW * report.resolve_rate.planned:
            lines += ["> [!WARNING]\n> So many attempts were cut that this run says little: give the agent more time "
                      "(--agent-timeout), a faster runner, or fewer workers per model.", ""]
    if report.pass_at_k:
        lines.append(" · ".join(f"pass@{k} {v:.1%}" for k, v in report.pass_at_k.items()) + "\n")
    return "\n".join(lines)


def verdict_section(verdict: Verdict | None, options: SummaryOptions) -> str:
    if verdict is None:
        return ""
    # The reasons are ci-eval's own sentences (numbers and flags), never artifact text.
    cause = CAUSES.get(verdict.cause)
    lines = [f"**Verdict: {verdict.word}**" + (f" ({cause})" if cause else "")
             + "".join(f"\n- {r}" for r in verdict.reasons)]
    if verdict.word == "regression" and verdict.cause == "lost_verdicts":
        lines.append("\nA run that loses significantly more verdicts than its baseline fails this check, whatever "
                     "on-inconclusive says.")
    if verdict.word == "inconclusive":
        lines.append("\nInconclusive " + ("**fails** this check (on-inconclusive: fail)." if options.on_inconclusive
                                          == "fail" else "is a warning here, not a failure (on-inconclusive: warn)."))
    return "\n".join(lines) + "\n"


def changes_section(report: Report, c: Comparison, options: SummaryOptions) -> str:
    f = c.full_set
    rows = [f"| resolve rate on the {c.compared} compared instances | {c.base_rate:.1%} | {c.new_rate:.1%} | "
            f"{points(c.delta)} points |"]
    if f is not None:
        interval = f" (95% CI {points(f.ci95[0])} to {points(f.ci95[1])})" if f.sampled else ""
        rows.append(f"| full set, {'estimated from the sample' if f.sampled else 'the whole set ran'} | "
                    f"{f.base_rate:.1%} | {f.rate:.1%} | {points(f.change)} points{interval} |")
    aside = "".join(f"\n- set aside, base run {a.run}: {text(a.why)}" for a in c.set_aside)
    spread = (f" The baseline runs vary together {c.overdispersion:.2f} times as much as independent outcomes "
              "would: the test's null is widened by that." if c.overdispersion > 1 else "")
    out = ["### Against the baseline", "",
           f"Baseline: {c.baseline_runs} run(s) of the base branch like this one (same server, model digest, dataset "
           "and network); each run counts once per instance, whatever its epochs." + aside, "",
           "| | baseline | this run | change |", "| --- | ---: | ---: | ---: |", *rows, "",
           f"The question: did the compared instances get worse? This is run {c.push} of this pull request, which "
           f"may spend alpha {c.alpha_spent:.3g} of {c.alpha:g}. One-sided p = {c.p_worse:.3g} for a fall, "
           f"{c.p_better:.3g} for a rise ({c.test}).{spread} Without a verdict: {c.no_verdict_rate_new:.0%} of the "
           f"planned instances here, {c.no_verdict_rate_base:.0%} in the baseline runs (p = {c.p_lost_verdicts:.3g} "
           "for this many or more). "
           + ("No drop is detectable with 80% probability here, even losing every resolve: compare more "
              "instances, or more informative ones." if c.detectable_points is None else
              f"A drop of {c.detectable_points:.1f} points of the full set ({c.detectable_drop:.0%} of its "
              "resolves) would be flagged with 80% probability."), ""]
    for title, ids in (("Newly failing", c.newly_failing), ("Newly resolved", c.newly_resolved)):
        if ids:
            out += [f"#### {title} ({len(ids)})", "", "| instance | baseline | now | why | logs |",
                    "| --- | ---: | --- | --- | --- |",
                    *(_change_row(iid, report.instances[iid], c, options) for iid in ids[:_LISTED]), ""]
            if len(ids) > _LISTED:
                out += [f"_… and {len(ids) - _LISTED} more in report.json._", ""]
    if not c.newly_failing and not c.newly_resolved:
        out += ["No instance changed side against the baseline's majority.", ""]
    return "\n".join(out)


def _change_row(iid: str, e: InstanceResult, c: Comparison, options: SummaryOptions) -> str:
    t = c.frequencies[iid]
    return (f"| {code(iid)} | resolved in {t.resolved:g} of {t.tries} run(s) | {e.status} | {why(e)} | "
            f"{_logs(iid, options)} |")


def _logs(iid: str, options: SummaryOptions) -> str:
    where = code(f"{LOGS}/{iid}/{epoch_folder(0)}/")
    return f"[artifact]({options.logs_url}) {where}" if options.logs_url else where


def chart(c: Comparison) -> str:
    """The resolve rate over the baseline runs and this run, on the compared instances (Mermaid)."""
    if len(c.history) < 2:
        return ""
    labels = ", ".join(f'"{p.label}"' for p in c.history)
    values = ", ".join(f"{p.rate * 100:.1f}" for p in c.history)
    top = max(10, min(100, int(max(p.rate for p in c.history) * 100 // 10 + 2) * 10))
    return "\n".join(["```mermaid", "xychart-beta", f'    title "Resolve rate (%) on the {c.compared} compared '
                      'instances"', f"    x-axis [{labels}]", f'    y-axis "resolved (%)" 0 --> {top}',
                      f"    bar [{values}]", "```", ""])


def apart_section(report: Report, c: Comparison) -> str:
    """What the paired numbers leave out: whole-run rates and the instances not compared."""
    rate = report.resolve_rate
    lines = ["### Not paired", "", f"Whole runs, over everything each planned (not the same instances): this run "
             f"{rate.resolved} of {rate.planned} ({rate.rate:.1%}, 95% CI {rate.ci95[0]:.1%} to {rate.ci95[1]:.1%})"]
    if c.whole_run_base is not None:
        b = c.whole_run_base
        lines[-1] += f"; the newest baseline run {b.resolved} of {b.planned} ({b.rate:.1%})."
    lines.append("")
    for title, ids in (("no verdict in this run", c.no_verdict_new), ("no verdict in the baseline", c.no_verdict_base),
                       ("planned by one side only", c.only_in_one)):
        if ids:
            listed = ", ".join(code(i) for i in ids[:_LISTED]) + (" …" if len(ids) > _LISTED else "")
            lines += [f"<details><summary>Not compared, {title}: {len(ids)}</summary>", "", listed, "", "</details>",
                      ""]
    return "\n".join(lines)


def suspicious_section(report: Report) -> str:
    """Patches that touch how the tests are collected or judged: graded as the official harness
    grades them, named here so that a person looks."""
    if not report.suspicious:
        return ""
    rows = [f"| {code(iid)} | {report.instances[iid].status} | {text('; '.join(report.instances[iid].suspicious))} |"
            for iid in report.suspicious[:_LISTED]]
    return "\n".join(["### Suspicious patches", "", "These patches touch test collection or configuration; their "
                      "verdict is the official harness's, but read them.", "", "| instance | status | touches |",
                      "| --- | --- | --- |", *rows, ""])


def status_section(report: Report) -> str:
    rows = [f"| {status} | {n} |" for status, n in report.totals.by_status.items()]
    return "\n".join(["### Status", "", "| status | instances |", "| --- | ---: |", *rows, ""])


REASONS = {
    Status.EMPTY_PATCH: "the agent changed no file",
    Status.PATCH_FAILED: "the patch did not apply (git apply, --3way and patch --fuzz all refused it)",
    Status.TIMEOUT: "the tests hung under the patch",
    Status.TOO_SLOW: "the agent's wall clock cut it before its step limit",
    Status.NOT_ATTEMPTED: "not run: the shard's deadline, or its shard never reported",
    Status.UNREADABLE: "its result line is damaged",
    Status.ERROR: "an infrastructure failure",
}


def why(e: InstanceResult) -> str:
    """Every status says why, in a few words (Markdown: artifact text escaped, test names as code)."""
    if e.status == Status.UNRESOLVED:
        tests = ", ".join(code(t) for t in e.failing_tests[:3]) + (" …" if len(e.failing_tests) > 3 else "")
        return f"tests still failing: {tests}" if tests else "the tests did not pass"
    if e.status == Status.RESOLVED:
        return "the tests pass"
    reason = REASONS[e.status]
    if e.error is not None:
        reason += f": {text(e.error.message)}"
    if e.exit_reason and e.status in (Status.EMPTY_PATCH, Status.PATCH_FAILED):
        reason += f" (the agent: {code(e.exit_reason)} after {e.steps} steps)"
    return reason


def details_section(report: Report, options: SummaryOptions) -> str:
    """Every instance that did not resolve, folded: why, how the agent's attempt ended, what it
    cost; infrastructure apart from the model's failures."""
    groups: dict[str, list[str]] = {"Model failures": [], "Too slow (no verdict)": [], "Without a verdict": []}
    unknown = set(report.no_verdict)
    for iid, e in report.instances.items():
        if e.status == Status.RESOLVED:
            continue
        agent = f"{code(e.exit_reason)} after {e.steps} steps, {e.tokens:,} tokens" if e.exit_reason else ""
        row = f"| {code(iid)} | {e.status} | {why(e)} | {agent} | {e.time:.0f} s | {_logs(iid, options)} |"
        group = "Too slow (no verdict)" if e.status == Status.TOO_SLOW else "Without a verdict" if iid in unknown \
            else "Model failures"
        groups[group].append(row)
    out = []
    for title, rows in groups.items():
        if rows:
            out += [f"<details><summary>{title} ({len(rows)})</summary>", "",
                    "| instance | status | why | agent | time | logs |", "| --- | --- | --- | --- | ---: | --- |",
                    *rows, "", "</details>", ""]
    return "\n".join(out)


text = markdown_text  # artifact text as plain text in a Markdown line or table cell


def code(value: object, most: int = 120) -> str:
    """Artifact text as inline code: one line, no backtick that could end the span, no pipe that
    could end a table cell (GitHub splits cells on | even inside code)."""
    one_line = loggable(value, most).replace("`", "'").replace("|", "¦")
    return f"`{one_line}`" if one_line else "` `"


def repo_section(report: Report) -> str:
    rows = [f"| {text(repo)} | {r.resolved} | {r.planned} | {r.rate:.1%} |" for repo, r in report.per_repo.items()]
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
    if u.reprocessed_steps:
        where = ", ".join(code(iid) for iid in u.reprocessed_instances)
        rows.append(f"| ⚠️ model calls that processed their whole prompt again (the prompt cache missed) | "
                    f"{u.reprocessed_steps:,}: {where} |")
    return "\n".join(["### Model time", "", "| | |", "| --- | ---: |", *rows, ""])


def slowest_section(report: Report) -> str:
    slow = sorted(report.instances.items(), key=lambda kv: -kv[1].time)[:_SLOWEST]
    rows = [f"| {code(iid)} | {e.status} | {e.time:.1f} s |" for iid, e in slow if e.time > 0]
    return "\n".join(["### Slowest instances", "", "| instance | status | time |", "| --- | --- | ---: |", *rows, ""])


GLOSSARY = {
    "compared instances": "those with a model verdict (resolved, or a model failure) in this run and in the "
                          "baseline; the before → after is over these alone, so both sides count the same instances",
    "baseline frequency": "how often the base branch's recent runs resolved an instance (r of n tries); agent runs "
                          "are not repeatable, so one run is not the truth",
    "points": "percentage points of the resolve rate: 5.0% → 3.0% is -2.0 points",
    "p-value": "how likely this few (or this many) resolves would be if nothing had changed, given each instance's "
               "baseline frequency and its uncertainty",
    "alpha": "the false-alarm rate the gate accepts: a regression is called when p ≤ alpha",
    "detectable drop": "the smallest fall of the full set's resolve rate that this comparison flags with 80% "
                       "probability; a pass says nothing of smaller drops",
    "full set": "all instances the sample stands for; its change is estimated from the sample's strata",
    "informative sample": "instances drawn where the baseline's outcomes vary (stratified by history and "
                          "repository), so that a small sample can see a change",
    "no verdict": "infrastructure failure, too slow, not attempted or unreadable: never counted as a wrong answer",
    "config hash": "a hash of every setting that changes what is measured; runs with different hashes are "
                   "different experiments",
}


def glossary() -> str:
    rows = "\n".join(f"- **{term}**: {meaning}" for term, meaning in GLOSSARY.items())
    return f"<details><summary>Terms</summary>\n\n{rows}\n\n</details>\n"


def truncate(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    note = "\n\n_… summary truncated to stay under GitHub's 1 MiB limit; see report.json for everything._\n"
    cut = data[: limit - len(note.encode())].decode(errors="ignore")
    return cut[: cut.rfind("\n") + 1] + note

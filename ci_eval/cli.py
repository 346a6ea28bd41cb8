"""click commands: parse, delegate, print. Exit 0 done, 1 failures remain, 2 bad input,
130/143 interrupted by SIGINT/SIGTERM (resumable)."""

from __future__ import annotations

import errno
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import click
from pydantic.fields import FieldInfo

from ci_eval import __version__
from ci_eval.config import FORMERLY, Settings, load_settings
from ci_eval.contracts.status import Status
from ci_eval.errors import InputError
from ci_eval.github import in_actions, write_outputs, write_summary
from ci_eval.untrusted import loggable

F = TypeVar("F", bound=Callable[..., Any])


def _section(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    return str(extra.get("section", "run")) if isinstance(extra, dict) else "run"


def _flag(name: str, field: FieldInfo) -> Callable[[Any], Any]:
    """One click option for one Settings field: its name, its type, its description as help."""
    flag = "--" + name.replace("_", "-")
    flags = [flag, *("--" + old.replace("_", "-") for old, new in FORMERLY.items() if new == name)]
    kind: Any = field.annotation
    if type(None) in get_args(kind):  # X | None: the option takes X; not given means "unset"
        kind = next(a for a in get_args(kind) if a is not type(None))
    default = field.get_default(call_default_factory=True)
    description = field.description or ""
    hidden = default is None or default is False or default in ([], "") or "[" in description
    shown = "" if hidden else f" [{default:g}]" if isinstance(default, float) else f" [{default}]"
    help_text = description + shown
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
    if get_origin(kind) is Literal:
        return click.option(*flags, name, type=click.Choice(list(get_args(kind))), help=help_text)
    if get_origin(kind) is list:
        return click.option(*flags, name, multiple=True, help=help_text)
    if kind is Path:
        return click.option(*flags, name, type=click.Path(path_type=Path), help=help_text)
    return click.option(*flags, name, type=kind, help=help_text)


def _options(func: F, sections: tuple[str, ...], before: list[Callable[[Any], Any]],
             after: list[Callable[[Any], Any]]) -> F:
    fields = [_flag(n, f) for n, f in Settings.model_fields.items() if _section(f) in sections]
    for option in reversed([*before, *fields, *after]):
        func = option(func)
    return func


def settings_options(func: F) -> F:
    """The flags that choose what to evaluate, made from the Settings fields; an unset flag falls
    through to env, file, defaults."""
    config = click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML file of settings.")
    timings = click.option("--timings", type=click.Path(path_type=Path, exists=True),
                           help="Cost prior: JSON id -> seconds, or an earlier run's report.json.")
    return _options(func, ("select", "pace"), [config], [timings])


def run_options(func: F) -> F:
    """The flags of how to run, made from the Settings fields (one source of help and defaults)."""
    return _options(func, ("run",), [], [])


def one_line_errors(func: F) -> F:
    """Turn InputError into one line on stderr and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            click.echo(f"ci-eval: error: {loggable(exc)}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _settings(config_file: Path | None, **flags: Any) -> Settings:
    flags["instance_ids"] = list(flags.get("instance_ids") or []) or None
    return load_settings(flags, config_file)


@click.group()
@click.version_option(__version__, prog_name="ci-eval")
def main() -> None:
    """Evaluate a bash-only coding agent on SWE-bench Verified, one shard per CI job."""
    log_to_stderr()


class _Lines(logging.Handler):
    """One plain line per message on whatever stderr is when it is said."""

    def emit(self, record: logging.LogRecord) -> None:
        warning = "warning: " if record.levelno >= logging.WARNING else ""
        print(f"ci-eval: {warning}{loggable(record.getMessage())}", file=sys.stderr, flush=True)


def log_to_stderr() -> None:
    """ci-eval's own lines (what it decided, what it warns of) on stderr, once per process."""
    logger = logging.getLogger("ci_eval")
    if not any(isinstance(h, _Lines) for h in logger.handlers):
        logger.addHandler(_Lines())
    logger.setLevel(logging.INFO)


@main.command("plan")
@click.option("--of", "of", type=int, help="Number of shards (or let --budget-minutes choose).")
@click.option("--budget-minutes", type=click.FloatRange(min=1), help="Choose the fewest shards expected to end "
              "within this many minutes each, setup included (from the timings prior or the difficulty prior).")
@click.option("--output", "plan_file", type=click.Path(path_type=Path),
              help="Also write the plan (instances, costs, shards) for `ci-eval shard --plan`.")
@settings_options
@one_line_errors
def plan_command(of: int | None, budget_minutes: float | None, plan_file: Path | None,
                 config_file: Path | None, timings: Path | None, **flags: Any) -> None:
    """Print the GitHub Actions matrix for N shards."""
    from ci_eval.partition import matrix
    from ci_eval.planfile import make_plan, priced_slots, write_plan

    settings = _settings(config_file, **flags)
    if (of is None) == (budget_minutes is None):
        raise InputError("give either --of N or --budget-minutes M")
    plan = make_plan(settings, of, timings, budget_minutes)
    if budget_minutes is not None:
        click.echo(f"ci-eval: {plan.of} shard(s) for {budget_minutes:g} minutes, {priced_slots(settings)} instance(s) "
                   "at once each", err=True)
    if plan_file is not None:
        write_plan(plan_file, plan)
    click.echo(json.dumps(matrix(plan.shards)))


@main.command("shard")
@click.option("--index", type=int, required=True, help="This shard's index, 0-based.")
@click.option("--of", "of", type=int, help="Number of shards (not needed with --plan).")
@click.option("--plan", "plan_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Run from the plan job's plan (ci-eval plan --output): no dataset load, no re-planning.")
@settings_options
@run_options
@one_line_errors
def shard_command(index: int, of: int | None, plan_file: Path | None, config_file: Path | None,
                  timings: Path | None, **flags: Any) -> None:
    """Run one shard: solve (or take predictions for) each instance, grade it, record it."""
    from ci_eval.pool import Interrupted
    from ci_eval.shard import run_shard

    settings = _settings(config_file, **flags)
    try:
        result = run_shard(settings, index, of, timings, plan_file)
    except Interrupted as exc:
        click.echo(f"ci-eval: interrupted by {exc}; run the same command again to resume", err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:  # before the shard's own handlers are up (loading, a local model starting)
        click.echo("ci-eval: interrupted by SIGINT; run the same command again to resume", err=True)
        sys.exit(130)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        click.echo(f"ci-eval: error: no space left on the device of {exc.filename or 'the shard folder'}; what "
                   "finished is kept: free space and run the same command again to resume", err=True)
        sys.exit(1)
    counts = result.counts
    write_outputs({"resolved": counts[Status.RESOLVED], "instances": len(result.records),
                   "infrastructure-failures": result.infra_failures, "folder": str(result.folder)})
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    # Nothing finished can mean nothing was planned, or that the deadline came first.
    empty = "nothing planned" if not result.planned else "nothing finished"
    click.echo(f"ci-eval: shard {index} done: {summary or empty} ({result.folder})", err=True)
    if result.unfinished:
        click.echo(f"ci-eval: {result.unfinished} instance(s) not done: {result.stopped}; run the same "
                   "command again (or re-run the failed job) to resume them", err=True)
    if result.infra_failures:
        click.echo(f"ci-eval: {result.infra_failures} instance(s) ended in infrastructure failures; "
                   "rerun to retry them", err=True)
    if not in_actions():  # on a laptop: what to do with the folder (the workflow has its aggregate job)
        click.echo(f"ci-eval: next: ci-eval aggregate {result.folder}   (report.json, junit.xml and the summary)",
                   err=True)
    if result.unfinished or result.infra_failures:
        sys.exit(1)


def gate_options(func: F) -> F:
    """The rules a run is judged by: the same flags, verdicts and exit codes for aggregate and compare."""
    options = [
        click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
                     show_default=True, help="False-alarm rate of the regression test against the baseline."),
        click.option("--max-detectable-drop", type=click.FloatRange(min=0), metavar="POINTS",
                     help="A pass that could not have detected a drop of this many points (80% power) is "
                     "inconclusive."),
        click.option("--fail-under", type=click.FloatRange(0, 1),
                     help="Regression when the resolve rate is below this."),
        click.option("--max-new-failures", type=click.IntRange(0),
                     help="Regression when more instances newly fail (resolved in most baseline tries)."),
        click.option("--fail-on-suspicious", is_flag=True,
                     help="Regression when any patch touches test collection or configuration (conftest.py, …)."),
        click.option("--baseline-missing", is_flag=True,
                     help="A baseline was wanted but none was found: the verdict is at best inconclusive."),
        click.option("--on-inconclusive", type=click.Choice(["warn", "fail"]), default="warn", show_default=True,
                     help="What the CI check does with inconclusive, as the summary states it (the exit code is 3, "
                     "or 4 when the run lost verdicts, either way)."),
        click.option("--push", type=click.IntRange(1), default=1, show_default=True,
                     help="Which run of its pull request this is: run k spends alpha 6/(pi^2 k^2), so that a pull "
                     "request re-tested on every push keeps its false alarms under --alpha."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _gate(flags: dict[str, Any]) -> Any:
    """The gate flags, taken out of `flags`, as the rules they set (one field per flag)."""
    from dataclasses import fields

    from ci_eval.report.verdict import Gate

    return Gate(**{f.name: flags.pop(f.name) for f in fields(Gate)})


def _print_verdict(result: Any) -> None:
    """The answer's line and the verdict, on stdout; the exit code says the verdict."""
    from ci_eval.report.markdown import answer

    click.echo(answer(result.report).lstrip("# ").rstrip())
    v = result.verdict
    click.echo(f"verdict: {v.word}" + (f" ({v.cause})" if v.cause else "")
               + "".join(f"; {loggable(r)}" for r in v.reasons))
    sys.exit(result.verdict.exit_code)


@main.command("aggregate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), default=Path("ci-eval-report"), show_default=True,
              help="Where report.json, junit.xml and summary.md go.")
@click.option("--allow-partial", is_flag=True, help="Missing shards are a warning; their instances not attempted.")
@click.option("--baseline", "baselines", multiple=True, type=click.Path(path_type=Path),
              help="A baseline report.json, or a folder of them (repeatable): the base branch's recent runs.")
@gate_options
@one_line_errors
def aggregate_command(paths: tuple[Path, ...], output: Path, allow_partial: bool, baselines: tuple[Path, ...],
                      **flags: Any) -> None:
    """Merge shard artifacts into a report, JUnit XML and a job summary, judged against the baselines.

    Exit 0 pass, 1 regression, 2 bad input, 3 inconclusive for lack of data, 4 inconclusive because
    the run lost verdicts."""
    from ci_eval.github import artifacts_url
    from ci_eval.report.aggregate import aggregate

    result = aggregate(paths, output, allow_partial=allow_partial, baselines=baselines, gate=_gate(flags),
                       logs_url=artifacts_url())
    write_summary(result.summary)  # GitHub's side effects stay here, at the edge
    write_outputs(result.outputs())
    for warning in result.report.warnings:
        click.echo(f"ci-eval: warning: {loggable(warning)}", err=True)
    _print_verdict(result)


@main.command("export")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), default=Path("preds.json"), show_default=True,
              help="The predictions file to write.")
@click.option("--epoch", "--sample", "epoch", type=click.IntRange(0), default=0, show_default=True,
              help="Which epoch's patches.")
@click.option("--model-name", help="model_name_or_path to write [the run's model].")
@one_line_errors
def export_command(paths: tuple[Path, ...], output: Path, epoch: int, model_name: str | None) -> None:
    """Write a run's patches as the official predictions file (swebench run_evaluation, sb-cli)."""
    from ci_eval.report.export import export

    written = export(paths, output, epoch=epoch, model_name=model_name)
    click.echo(f"ci-eval: {written} prediction(s) written to {output}", err=True)


@main.command("compare")
@click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path),
              help="Write the judged report (the comparison and the verdict in it) to this file.")
@gate_options
@one_line_errors
def compare_command(reports: tuple[Path, ...], output: Path | None, **flags: Any) -> None:
    """Judge the last report.json against the ones before it (files or folders: a baseline history),
    with the gate of `aggregate`: the same verdict and exit codes (0 pass, 1 regression, 3 and 4 inconclusive)."""
    from ci_eval.history import load_history, read_report
    from ci_eval.report.aggregate import judged

    if len(reports) < 2:
        raise InputError("give the baseline report(s), then the report to judge: ci-eval compare BASE... NEW")
    (history, _), new = load_history(reports[:-1]), read_report(reports[-1])  # each set aside is logged
    other = sorted({str(r.identity.get("config_hash")) for r in history} - {str(new.identity.get("config_hash"))})
    if other:  # a pull request's change is one; say it, so that an unintended one is seen
        click.echo(f"ci-eval: note: the baseline run(s) have config hash {', '.join(other)}, this run "
                   f"{new.identity.get('config_hash')}: a setting of the run differs (the model, the agent, its "
                   "prompts or limits, the dataset); the verdict says what that difference did", err=True)
    result = judged(history, new, _gate(flags))
    if output is not None:
        output.write_text(result.report.model_dump_json(indent=1) + "\n", encoding="utf-8")
    click.echo(result.comment, err=True)
    _print_verdict(result)


@main.command("ab")
@click.argument("a", type=click.Path(path_type=Path, exists=True))
@click.argument("b", type=click.Path(path_type=Path, exists=True))
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="False-alarm rate of each direction's test.")
@click.option("--output", type=click.Path(path_type=Path), help="Write the answer's summary (Markdown) to this file.")
@one_line_errors
def ab_command(a: Path, b: Path, alpha: float, output: Path | None) -> None:
    """Is B better than A? Two runs on the same instances (report.json files or their folders),
    judged by the paired gate of a pull request's verdict. Exit 0 better, 1 worse, 3 no
    difference shown, 2 bad input."""
    from ci_eval.contracts.report import REPORT
    from ci_eval.history import read_report
    from ci_eval.report.ab import ab

    def report(path: Path) -> Any:
        return read_report(path / REPORT if path.is_dir() else path)

    answer = ab(report(a), report(b), alpha)
    write_summary(answer.summary)
    if output is not None:
        output.write_text(answer.summary, encoding="utf-8")
    click.echo(answer.summary.splitlines()[0].lstrip("# "))
    sys.exit(answer.exit_code)

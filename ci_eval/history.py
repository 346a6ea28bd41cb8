"""A baseline history: earlier runs' reports, and each instance's frequency in them (resolved in
r of n tries, every epoch of every run a try)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from ci_eval.contracts.report import REPORT, Report
from ci_eval.contracts.status import Status
from ci_eval.document import read_document
from ci_eval.errors import InputError

log = logging.getLogger("ci_eval")


def report_paths(paths: Iterable[Path]) -> list[Path]:
    """The report.json files named, or found below the folders named (a folder of downloaded reports)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            below = sorted(path.rglob(REPORT))
            if not below:
                raise InputError(f"{path} holds no {REPORT}; give report files or a folder of them")
            found += below
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path} does not exist; give a report.json or a folder of them")
    return found


def load_history(paths: Iterable[Path]) -> tuple[list[Report], list[str]]:
    """The reports, oldest first (by their last record's end, then by path), and a warning for each
    one set aside: a baseline report is an artifact anyone's run may have written, so one that does
    not read or whose counts do not add up is named and left out, never allowed to stop a verdict."""
    named, aside = [], []
    for path in report_paths(paths):
        try:
            named.append((read_report(path), str(path)))
        except InputError as exc:
            aside.append(f"baseline report set aside: {exc}")
            log.warning("%s", aside[-1])
    return [r for r, _ in sorted(named, key=lambda rp: (rp[0].finished_at, rp[1]))], aside


class Tries(NamedTuple):
    """Resolved in `resolved` of `tries` tries (a plain tuple: histories hold thousands)."""

    resolved: int
    tries: int


def tries_in(report: Report) -> dict[str, Tries]:
    """One run's instances with a model verdict: its epochs are its tries."""
    out = {}
    for iid, e in report.instances.items():
        if e.status.verdict is None:
            continue
        resolved = e.resolved_epochs if e.epochs else int(e.status == Status.RESOLVED)
        out[iid] = Tries(resolved, max(e.epochs, 1))
    return out


def frequencies(reports: Sequence[Report]) -> dict[str, Tries]:
    """Every instance any of the runs judged, with its tries summed over them (what an informative
    sample stratifies by: resolved at least once, or never)."""
    total: dict[str, Tries] = {}
    for run in map(tries_in, reports):
        for iid, (resolved, tries) in run.items():
            was = total.get(iid, (0, 0))
            total[iid] = Tries(was[0] + resolved, was[1] + tries)
    return total


def read_report(path: Path) -> Report:
    return read_document(path, Report, "a ci-eval report", "give the report.json of a ci-eval run")

"""GITHUB_OUTPUT, GITHUB_STEP_SUMMARY and run attempts: the only GitHub-aware Python (the
artifact names live in action.yml, the one place that uploads them)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path


def in_actions() -> bool:
    """Whether this runs on a GitHub Actions runner (whose token a job's processes can read)."""
    return bool(os.environ.get("GITHUB_ACTIONS"))


def run_attempt() -> int:
    """Which attempt of the workflow run this is ("re-run failed jobs" increments it)."""
    return int(os.environ.get("GITHUB_RUN_ATTEMPT") or 1)


def artifacts_url() -> str:
    """This run's page, at its artifacts (where every shard's logs are), or "" off GitHub."""
    server, repo, run = (os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}#artifacts" if server and repo and run.isdigit() else ""


def write_outputs(values: Mapping[str, object]) -> bool:
    """Append step outputs to $GITHUB_OUTPUT (heredoc form, safe for any value)."""
    target = os.environ.get("GITHUB_OUTPUT")
    if not target:
        return False
    with open(target, "a", encoding="utf-8") as f:
        for key, value in values.items():
            text = str(value)
            if "\n" in text:
                marker = f"ghadelim_{uuid.uuid4().hex}"
                f.write(f"{key}<<{marker}\n{text}\n{marker}\n")
            else:
                f.write(f"{key}={text}\n")
    return True


def write_summary(markdown: str) -> bool:
    """Append Markdown to the job summary ($GITHUB_STEP_SUMMARY), when there is one."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    with Path(target).open("a", encoding="utf-8") as f:
        f.write(markdown)
    return True

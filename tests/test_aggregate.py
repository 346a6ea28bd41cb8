"""Aggregation over shard sets built here, laid out as download-artifact lays them out."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ci_eval.contracts.shard import Record
from ci_eval.contracts.status import Status
from ci_eval.errors import InputError
from ci_eval.report.aggregate import aggregate
from ci_eval.report.build import pass_at_k, wilson
from ci_eval.report.markdown import truncate
from ci_eval.report.verdict import Gate
from ci_eval.shard_folder import now
from tests.conftest import FIXTURES
from tests.test_cli import run

IDENTITY = {"ci_eval_version": "0.1.0", "model": "m", "base_url": "http://localhost:11434/v1",
            "dataset": "d", "split": "test", "dataset_fingerprint": "f", "config_hash": "h"}
PLAN = [[f"org__repo{n % 2}-{n}" for n in range(k * 4, k * 4 + 4)] for k in range(3)]  # 3 shards of 4
STATUSES = ["resolved", "unresolved", "resolved", "error"]


def record(iid: str, status: str, epoch: int = 0, seconds: float = 10.0) -> Record:
    error = {"kind": "docker", "message": "daemon went away"} if status in ("error", "timeout") else None
    tests = {"FAIL_TO_PASS": {"success": [], "failure": ["t.py::test_x"]}} if status == "unresolved" else \
        {"FAIL_TO_PASS": {"success": ["t.py::test_x"]}} if status == "resolved" else {}
    return Record.model_validate({
        "instance_id": iid, "repo": iid.rsplit("-", 1)[0].replace("__", "/"), "epoch": epoch, "status": status,
        "error": error, "tests": tests, "patch": "diff --git a/x b/x\n" if status != "empty_patch" else "",
        "timings": {"total": seconds, "eval": seconds / 2},
        "agent": {"prompt_tokens": 100, "completion_tokens": 10}, "started_at": now(), "finished_at": now(),
    })


def shard(folder: Path, index: int, statuses: list[str], attempt: int = 1, identity: dict[str, Any] | None = None,
          plan: list[list[str]] = PLAN, epochs: int = 1, extra: list[Record] = (),  # type: ignore[assignment]
          config: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True)
    manifest = {"schema_version": 2, "identity": identity or IDENTITY, "shard": {"index": index, "of": len(plan),
                "run_attempt": attempt}, "planned": plan[index], "plan": plan, "epochs": epochs,
                "written_at": now(), "config": config or {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    records = [record(iid, status, s) for iid, status in zip(plan[index], statuses, strict=False)
               for s in range(epochs)]
    (folder / "results.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in [*records, *extra]))
    return folder


def per_artifact(root: Path, index: int, statuses: list[str], attempt: int = 1, **kw: Any) -> Path:
    """download-artifact without merge-multiple: one folder per artifact, named as the action names it."""
    return shard(root / f"ci-eval-shard-{index}-attempt-{attempt}" / f"shard-{index}-attempt-{attempt}", index,
                 statuses, attempt, **kw)


def publish(result: Any) -> Any:
    """What `ci-eval aggregate` does with a result at the edge: the job summary and step outputs."""
    from ci_eval.github import write_outputs, write_summary

    write_summary(result.summary)
    write_outputs(result.outputs())
    return result


def complete(root: Path) -> Path:
    for n in range(3):
        per_artifact(root, n, STATUSES)
    return root


@pytest.fixture(scope="session")
def junit_schema() -> Any:
    """Jenkins' junit-10.xsd, the schema pytest validates its own JUnit XML against (copied from
    pytest 9.2.0's sdist, testing/example_scripts/junit-10.xsd, MIT): shipped, so that the test
    runs offline."""
    import xmlschema

    return xmlschema.XMLSchema(str(FIXTURES / "junit-10.xsd"))


def test_a_complete_run_with_infrastructure_errors_reports_them_apart_and_is_inconclusive(
        tmp_path: Path, junit_schema: Any) -> None:
    out = tmp_path / "report"
    result = aggregate([complete(tmp_path / "artifacts")], out)
    report = result.report.model_dump(mode="json")
    assert report["totals"] == {"planned": 12, "attempted": 12,
                                "by_status": {"error": 3, "resolved": 6, "unresolved": 3}}
    assert report["resolve_rate"]["rate"] == 0.5
    low, high = report["resolve_rate"]["ci95"]
    assert low < 0.5 < high
    assert report["infrastructure_failures"]["count"] == 3 and report["model_failures"]["unresolved"] == 3
    assert report["per_repo"]["org/repo0"]["planned"] == 6
    assert report["usage"]["prompt_tokens"] == 1200
    assert report["warnings"] == []
    # three infrastructure failures: no verdict on those, so never a pass
    assert result.verdict.word == "inconclusive" and report["no_verdict"] == sorted(
        iid for ids in PLAN for iid in ids if iid.endswith(("-3", "-7", "-11")))

    xml = (out / "junit.xml").read_text()
    junit_schema.validate(xml)
    from junitparser import Error, Failure, JUnitXml, Skipped

    cases = [case for suite in JUnitXml.fromfile(str(out / "junit.xml")) for case in suite]
    assert Counter(c.name for c in cases) == {iid: 1 for ids in PLAN for iid in ids}
    kinds = Counter(type(c.result[0]).__name__ if c.result else "passed" for c in cases)
    assert kinds == {"passed": 6, Failure.__name__: 3, Error.__name__: 3}
    failure = next(c for c in cases if c.result and isinstance(c.result[0], Failure))
    assert "t.py::test_x" in failure.result[0].message and failure.classname.startswith("org/repo")
    assert not any(isinstance(c.result[0], Skipped) for c in cases if c.result)
    assert (out / "summary.md").read_text().startswith(
        "## ⚠️ inconclusive (lost verdicts) — ci-eval: 6 of 12 resolved (50.0%")


def test_missing_shard_refused_unless_partial(tmp_path: Path, junit_schema: Any) -> None:
    root = tmp_path / "artifacts"
    per_artifact(root, 0, STATUSES)
    per_artifact(root, 2, STATUSES)
    with pytest.raises(InputError, match=r"missing shard\(s\) 1 of 3.*--allow-partial"):
        aggregate([root], tmp_path / "r")
    result = aggregate([root], tmp_path / "r", allow_partial=True)
    assert result.report.totals.by_status[Status.NOT_ATTEMPTED] == 4
    assert result.report.resolve_rate.planned == 12  # the rate is over everything planned
    assert any("missing" in w for w in result.report.warnings)
    xml = (tmp_path / "r" / "junit.xml").read_text()
    junit_schema.validate(xml)
    assert xml.count("<skipped") == 4


def test_duplicate_instance_is_named(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    per_artifact(root, 0, STATUSES)
    per_artifact(root, 1, STATUSES, extra=[record(PLAN[0][0], "unresolved")])  # shard 1 also ran shard 0's
    per_artifact(root, 2, STATUSES)
    report = aggregate([root], tmp_path / "r").report.model_dump(mode="json")
    assert any(PLAN[0][0] in w and "duplicate" in w for w in report["warnings"])
    assert report["instances"][PLAN[0][0]]["status"] == "resolved"  # its own shard's result wins


def test_mismatched_identity_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    per_artifact(root, 0, STATUSES)
    per_artifact(root, 1, STATUSES, identity={**IDENTITY, "model": "other-model"})
    with pytest.raises(InputError, match=r"model is 'm' in .* but 'other-model'"):
        aggregate([root], tmp_path / "r")



def test_shards_of_two_configurations_are_refused_naming_the_setting(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    per_artifact(root, 0, STATUSES, config={"step_limit": 40, "model": "m"})
    per_artifact(root, 1, STATUSES, identity={**IDENTITY, "config_hash": "other"},
                 config={"step_limit": 60, "model": "m"})
    with pytest.raises(InputError, match=r"setting step_limit is 40 in .* but 60 in"):
        aggregate([root], tmp_path / "r")


@pytest.mark.parametrize("layout", ["per-artifact", "merged"])
def test_rerun_keeps_newest_attempt_of_rerun_shard_only(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "artifacts"
    if layout == "per-artifact":
        per_artifact(root, 0, STATUSES)
        per_artifact(root, 1, STATUSES)
        per_artifact(root, 2, ["error"] * 2, attempt=1)  # died half-way on the first attempt
        per_artifact(root, 2, ["resolved"] * 4, attempt=2)
    else:  # merge-multiple: true puts every artifact's contents side by side
        for n in range(2):
            shard(root / f"shard-{n}-attempt-1", n, STATUSES)
        shard(root / "shard-2-attempt-1", 2, ["error"] * 2, attempt=1)
        shard(root / "shard-2-attempt-2", 2, ["resolved"] * 4, attempt=2)
    report = aggregate([root], tmp_path / "r").report.model_dump(mode="json")
    assert report["shards"]["run_attempts"] == {"0": 1, "1": 1, "2": 2}
    assert all(report["instances"][iid]["status"] == "resolved" for iid in PLAN[2])
    assert report["totals"]["by_status"] == {"error": 2, "resolved": 8, "unresolved": 2}


def test_epochs_give_pass_at_k(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    for n in range(3):
        per_artifact(root, n, STATUSES, epochs=3)
    report = aggregate([root], tmp_path / "r").report.model_dump(mode="json")
    assert set(report["pass_at_k"]) == {"1", "2", "3"}
    assert report["pass_at_k"]["1"] == 0.5 and report["instances"][PLAN[0][0]]["resolved_epochs"] == 3


def test_baseline_verdict_and_github_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = aggregate([complete(tmp_path / "base")], tmp_path / "base-report").report.model_dump(mode="json")
    assert base["resolve_rate"]["resolved"] == 6
    worse = tmp_path / "worse"
    for n in range(3):
        per_artifact(worse, n, ["unresolved", "unresolved", "resolved", "error"])  # 3 newly failing
    summary, outputs = tmp_path / "summary.md", tmp_path / "output.txt"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    result = publish(aggregate([worse], tmp_path / "r", baselines=[tmp_path / "base-report" / "report.json"],
                               gate=Gate(max_new_failures=2)))
    assert result.comparison is not None and len(result.comparison.newly_failing) == 3
    assert result.verdict.regression and any("3 newly failing" in r for r in result.verdict.reasons)
    assert "Newly failing" in summary.read_text() and "One-sided p" in summary.read_text()
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert out["verdict"] == "regression" and out["newly-failing"] == "3" and out["resolved"] == "3"
    ok = aggregate([worse], tmp_path / "r2", baselines=[tmp_path / "base-report" / "report.json"],
                   gate=Gate(max_new_failures=3, fail_under=0.2))
    # within the explicit limits; and from one baseline run, 3 of 9 where 6 resolved before is not a
    # significant drop, nor could the 3 instances without a verdict (none in the baseline either)
    # make it one: a pass, whose no-verdicts are no more than the baseline's
    assert ok.comparison is not None and ok.comparison.p_worse > 0.05 and ok.comparison.p_lost_verdicts == 1.0
    assert ok.verdict.word == "pass", ok.verdict


def test_cli_exit_codes_and_compare(tmp_path: Path) -> None:
    complete(tmp_path / "a")
    cli = run
    unsure = cli("aggregate", str(tmp_path / "a"), "--output", str(tmp_path / "ra"), "--fail-under", "0.6")
    # 6 of 12 is under 0.6, but the 3 errors could lift it to 9 of 12: inconclusive, lost verdicts
    assert unsure.returncode == 4 and "verdict: inconclusive (lost_verdicts)" in unsure.stdout, unsure.stderr
    bad = cli("aggregate", str(tmp_path / "a"), "--output", str(tmp_path / "rb"), "--fail-under", "0.8")
    assert bad.returncode == 1 and "under --fail-under" in bad.stdout
    judged = tmp_path / "judged"
    for n in range(3):
        per_artifact(judged, n, ["resolved", "unresolved", "resolved", "empty_patch"])
    ok = cli("aggregate", str(judged), "--output", str(tmp_path / "rd"), "--fail-under", "0.4")
    assert ok.returncode == 0 and "verdict: pass" in ok.stdout and "6 of 12 resolved" in ok.stdout
    wrong = cli("aggregate", str(tmp_path / "nowhere"), "--output", str(tmp_path / "rc"))
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    shown = cli("compare", str(tmp_path / "ra" / "report.json"), str(tmp_path / "ra" / "report.json"))
    # the same gate as aggregate's: its 3 instances without a verdict are the baseline's 3, and no
    # baseline run judged them, so they cannot decide it: a pass
    assert shown.returncode == 0 and "66.7% → 66.7% on the 9 instances both sides judged" in shown.stdout
    assert "verdict: pass" in shown.stdout
    assert "baseline run(s) have config hash" not in shown.stderr  # one configuration: nothing to note
    report = json.loads((tmp_path / "ra" / "report.json").read_text())
    report["identity"]["config_hash"] = "0123456789abcdef"
    (tmp_path / "other.json").write_text(json.dumps(report))
    noted = cli("compare", str(tmp_path / "other.json"), str(tmp_path / "ra" / "report.json"))
    assert noted.returncode == 0 and "baseline run(s) have config hash 0123456789abcdef" in noted.stderr


def test_wilson_interval_and_pass_at_k_match_their_textbook_values() -> None:
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.27 < high < 0.31  # the textbook 0.2775
    assert wilson(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-3)
    assert pass_at_k(10, 0, 3) == 0.0 and pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4) and pass_at_k(5, 2, 2) == pytest.approx(0.7)


def test_summary_truncates_under_a_mebibyte() -> None:
    text = "".join(f"| row {n} | {'x' * 100} |\n" for n in range(20000))
    cut = truncate(text, 1024 * 1024)
    assert len(cut.encode()) <= 1024 * 1024 and cut.endswith("see report.json for everything._\n")
    assert truncate("short\n", 1024) == "short\n"


def test_infrastructure_and_missing_are_never_newly_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "base"
    for n in range(3):
        per_artifact(base, n, ["resolved"] * 4)
    aggregate([base], tmp_path / "base-report")
    new = tmp_path / "new"
    per_artifact(new, 0, ["resolved", "resolved", "error", "resolved"])  # one infra failure
    per_artifact(new, 1, ["resolved", "unresolved", "resolved", "resolved"])  # one real new failure
    # shard 2 crashed: its artifact never arrived
    summary, outputs = tmp_path / "summary.md", tmp_path / "output.txt"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    result = publish(aggregate([new], tmp_path / "r", allow_partial=True, gate=Gate(max_new_failures=1),
                               baselines=[tmp_path / "base-report" / "report.json"]))
    c = result.comparison
    assert c is not None and c.newly_failing == [PLAN[1][1]] and c.compared == 7
    assert c.no_verdict_new == sorted([PLAN[0][2], *PLAN[2]])
    # 5 of 12 without a verdict where the baseline run had none: the run lost verdicts, a failure
    # of its own (a crashed shard is re-run, never a pass), not a wrong answer
    assert result.verdict.word == "regression" and result.verdict.cause == "lost_verdicts"
    assert result.verdict.exit_code == 1
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert out["verdict"] == "regression" and out["verdict-cause"] == "lost_verdicts"
    assert out["newly-failing"] == "1" and out["no-verdict"] == "5"
    text = summary.read_text()
    assert "Verdict: regression** (the run lost verdicts)" in text and "Verdict: pass" not in text
    assert "Not compared, no verdict in this run: 5" in text
    strict = aggregate([new], tmp_path / "r2", allow_partial=True, gate=Gate(max_new_failures=0),
                       baselines=[tmp_path / "base-report" / "report.json"])
    assert strict.verdict.word == "regression"  # one real new failure is one too many, whatever the rest


def test_what_cannot_be_read_is_said_not_dropped(tmp_path: Path, junit_schema: Any) -> None:
    root = tmp_path / "artifacts"
    for n in range(3):
        per_artifact(root, n, STATUSES)
    first = next(root.glob("ci-eval-shard-0-*/*/results.jsonl"))
    lines = first.read_text().splitlines(keepends=True)
    unknown = json.loads(lines[1])
    unknown["status"] = "mostly_resolved"
    lines[1] = json.dumps(unknown) + "\n"  # an unknown status
    lines[2] = "{this is not json\n"  # garbage in the middle
    first.write_text("".join(lines) + '{"instance_id": "torn')  # and a torn last line, cut silently
    next(root.glob("ci-eval-shard-1-*/*/results.jsonl")).unlink()  # a shard folder without results
    result = aggregate([root], tmp_path / "r")
    report = result.report.model_dump(mode="json")
    where = {(Path(u["file"]).parent.name, u["line"]) for u in report["unreadable"]}
    assert where == {("shard-0-attempt-1", 2), ("shard-0-attempt-1", 3), ("shard-1-attempt-1", 0)}
    assert any("results.jsonl:2" in w and "status" in w for w in report["warnings"])
    assert any("results.jsonl:3" in w for w in report["warnings"])
    assert any("results.jsonl is missing" in w for w in report["warnings"])
    assert not any("torn" in w or ":5" in w for w in report["warnings"])
    assert report["instances"][PLAN[0][1]]["status"] == "unreadable"  # its id could still be read
    assert report["instances"][PLAN[0][2]]["status"] == "not_attempted"  # nothing of it could
    assert result.verdict.word == "inconclusive"
    junit_schema.validate((tmp_path / "r" / "junit.xml").read_text())


def test_junit_stays_valid_xml_whatever_the_text(tmp_path: Path, junit_schema: Any) -> None:
    from xml.etree import ElementTree

    every_control = "".join(chr(c) for c in [*range(32), *range(127, 160)]) + "\ufffe\uffff"
    nasty = f"\x1b[31mserver said\x1b[0m {every_control} <&>\"' end"
    root = tmp_path / "artifacts"
    with pytest.raises(ValueError, match=r"error\.kind"):  # the kind is one of a closed set: no text gets in there
        Record.model_validate({**record(PLAN[0][3], "error").model_dump(),
                               "error": {"kind": f"docker{every_control}", "message": nasty}})
    extra = Record.model_validate({**record(PLAN[0][3], "error").model_dump(),
                                   "error": {"kind": "docker", "message": nasty}})
    per_artifact(root, 0, STATUSES[:3], extra=[extra])
    for n in (1, 2):
        per_artifact(root, n, STATUSES)
    aggregate([root], tmp_path / "r")
    xml = (tmp_path / "r" / "junit.xml").read_text()
    junit_schema.validate(xml)
    message = next(e for e in ElementTree.fromstring(xml).iter("error") if "server said" in e.get("message", ""))
    assert message.get("message", "").startswith("server said ") and "[31m" not in xml
    assert message.get("message", "").endswith("<&>\"' end")


def test_the_summary_names_the_instances_whose_prompt_cache_missed(tmp_path: Path) -> None:
    missed = record(PLAN[0][0], "unresolved")  # a later line for a planned instance: the newest counts
    missed = missed.model_copy(update={"agent": missed.agent.model_copy(update={"reprocessed_steps": 3})})
    root = tmp_path / "artifacts"
    for n in range(3):
        per_artifact(root, n, STATUSES, extra=[missed] if n == 0 else [])
    result = aggregate([root], tmp_path / "report")
    assert result.report.usage.reprocessed_steps == 3
    assert result.report.usage.reprocessed_instances == [missed.instance_id]
    row = next(line for line in result.summary.splitlines() if "processed their whole prompt again" in line)
    assert row.startswith("| ⚠️") and f"3: `{missed.instance_id}`" in row

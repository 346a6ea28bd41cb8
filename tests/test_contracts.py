"""The files between jobs keep their contracts: the committed JSON Schemas are the models', and
real shard output and reports validate against them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from ci_eval.cli import main
from ci_eval.errors import InputError
from ci_eval.history import read_report
from ci_eval.report.aggregate import aggregate
from ci_eval.schemas import SCHEMAS, schemas
from ci_eval.shard import run_shard
from ci_eval.shard_folder import read_manifest
from tests.conftest import FIXTURES, INSTANCES, settings


def test_the_committed_schemas_are_the_models() -> None:
    for name, schema in schemas().items():
        committed = json.loads((SCHEMAS / name).read_text())
        assert committed == schema, f"schemas/{name} is stale: run python -m ci_eval.schemas"


def test_real_shard_output_and_its_report_follow_the_schemas(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    made = CliRunner().invoke(main, ["plan", "--of", "1", "--dataset", str(INSTANCES), "--output", str(plan_file)])
    assert made.exit_code == 0, made.output
    jsonschema.validate(json.loads(plan_file.read_text()), json.loads((SCHEMAS / "plan.schema.json").read_text()))
    cfg = settings(tmp_path, predictions="gold", sandbox="local", repos_dir=FIXTURES / "repos",
                   output=tmp_path / "artifacts" / "shard-0")
    run_shard(cfg, 0, plan_file=plan_file)
    aggregate([tmp_path / "artifacts"], tmp_path / "report")
    manifest = json.loads((tmp_path / "artifacts" / "shard-0" / "manifest.json").read_text())
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    jsonschema.validate(manifest, json.loads((SCHEMAS / "manifest.schema.json").read_text()))
    jsonschema.validate(report, json.loads((SCHEMAS / "report.schema.json").read_text()))
    assert manifest["schema_version"] == 2 and report["schema_version"] == 2
    broken = dict(report, resolve_rate={"rate": "high"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads((SCHEMAS / "report.schema.json").read_text()))
    lines = (tmp_path / "artifacts" / "shard-0" / "results.jsonl").read_text().splitlines()
    record_schema = json.loads((SCHEMAS / "results.schema.json").read_text())
    assert len(lines) == len(made_plan(plan_file)) > 0
    for line in lines:
        jsonschema.validate(json.loads(line), record_schema)
    with pytest.raises(jsonschema.ValidationError):  # one status word, the same as the report's
        jsonschema.validate(dict(json.loads(lines[0]), status="passed"), record_schema)


def made_plan(path: Path) -> list[str]:
    return [iid for shard in json.loads(path.read_text())["shards"] for iid in shard]


def test_versions_are_read_by_their_one_name(tmp_path: Path) -> None:
    old = {"schema": 1, "identity": {}, "shard": {"index": 0, "of": 1, "attempt": 1}, "planned": [], "plan": [[]]}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    assert read_manifest(tmp_path / "manifest.json").shard.run_attempt == 1  # an older artifact still reads
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": 3}))
    with pytest.raises(InputError, match="is not a ci-eval report"):
        read_report(tmp_path / "report.json")


def test_version_1_files_read_under_todays_names(tmp_path: Path) -> None:
    """Before schema version 2 a repeat of an attempt was a sample: a baseline report, a shard
    folder to resume or aggregate, and a trajectory of then still read, their logs included."""
    from ci_eval.contracts.shard import Record, Trajectory
    from ci_eval.shard_folder import ResultStore, read_trajectory

    cfg = settings(tmp_path, predictions="gold", sandbox="local", repos_dir=FIXTURES / "repos", epochs=2,
                   instance_ids=["ci-eval-fixtures__calc-1"], output=tmp_path / "new" / "shard-0")
    folder = run_shard(cfg, 0, 1).folder
    aggregate([tmp_path / "new"], tmp_path / "new-report")
    today = read_report(tmp_path / "new-report" / "report.json")
    # The same report and shard folder as version 1 wrote them.
    old = json.loads((tmp_path / "new-report" / "report.json").read_text())
    old.update(schema_version=1, samples=old.pop("epochs"))
    for entry in old["instances"].values():
        entry.update(samples=entry.pop("epochs"), resolved_samples=entry.pop("resolved_epochs"))
    (tmp_path / "old-report.json").write_text(json.dumps(old))
    assert read_report(tmp_path / "old-report.json") == today
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(schema_version=1, samples=manifest.pop("epochs"))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    old_lines = [{**{k: v for k, v in r.items() if k not in ("epoch", "config_hash")}, "sample": r["epoch"],
                  "run": r["config_hash"]} for r in lines]
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old_lines))
    store = ResultStore(folder, manifest["identity"]["config_hash"])
    done, set_aside = store.resume()  # a resume keeps an old line of its own run
    store.close()
    assert sorted(done) == [("ci-eval-fixtures__calc-1", e) for e in (0, 1)] and set_aside == 0
    assert {Record.model_validate(r).key for r in old_lines} == set(done)
    traj = Trajectory(instance_id="x", epoch=1).model_dump()
    (tmp_path / "t.json").write_text(json.dumps({**traj, "schema_version": 1, "sample": traj.pop("epoch")}))
    assert read_trajectory(tmp_path / "t.json").epoch == 1
    logs = folder / "logs" / "ci-eval-fixtures__calc-1"
    (logs / "epoch-0").rename(logs / "sample-0")
    (logs / "sample-0" / "test_output.txt").write_text("an old run's test log\n")
    (folder / "results.jsonl").write_text((folder / "results.jsonl").read_text().replace('"resolved"', '"unresolved"')
                                          .replace('"success": ["', '"failure": ["'))
    reread = aggregate([tmp_path / "new"], tmp_path / "reread").report
    assert reread.epochs == 2 and reread.instances["ci-eval-fixtures__calc-1"].epochs == 2
    assert reread.instances["ci-eval-fixtures__calc-1"].log_tail == "an old run's test log"


def test_a_renamed_setting_reads_under_its_former_name_and_keeps_the_hash(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from ci_eval.config import load_settings

    toml = tmp_path / "old.toml"
    toml.write_text("samples = 3\n")
    assert load_settings({}, toml).epochs == load_settings({"samples": 3}).epochs == 3
    assert load_settings({"epochs": 2, "samples": 3}).epochs == 2  # today's name wins
    # hashed under the former name, as every run before the rename was: their config hash holds
    assert load_settings({"samples": 3}).hashed()["samples"] == 3 and "epochs" not in load_settings({}).hashed()
    monkeypatch.setenv("CI_EVAL_SAMPLES", "4")
    assert load_settings({}).epochs == 4
    help_text = CliRunner().invoke(main, ["shard", "--help"]).output
    assert "--epochs" in help_text and "--samples" in help_text


def test_every_way_an_attempt_ends_has_one_status() -> None:
    from ci_eval.contracts.status import STATUS_OF, ErrorKind, Status

    assert set(STATUS_OF) == set(ErrorKind)  # a new kind without a status fails here
    # the patch's doing: its tests hang, or the memory limit kills them (a verdict, never a hiding place)
    assert {kind for kind, status in STATUS_OF.items() if status.verdict is not None} == {ErrorKind.TIMEOUT,
                                                                                         ErrorKind.OOM}
    assert STATUS_OF[ErrorKind.DEADLINE] == Status.NOT_ATTEMPTED and STATUS_OF[ErrorKind.TIME_LIMIT] == Status.TOO_SLOW

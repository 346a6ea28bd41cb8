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
    assert manifest["schema_version"] == 1 and report["schema_version"] == 1
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
    assert read_manifest(tmp_path / "manifest.json").schema_version == 1  # an older artifact still reads
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": 2}))
    with pytest.raises(InputError, match="is not a ci-eval report"):
        read_report(tmp_path / "report.json")


def test_every_way_an_attempt_ends_has_one_status() -> None:
    from ci_eval.contracts.status import STATUS_OF, ErrorKind, Status

    assert set(STATUS_OF) == set(ErrorKind)  # a new kind without a status fails here
    # the patch's doing: its tests hang, or the memory limit kills them (a verdict, never a hiding place)
    assert {kind for kind, status in STATUS_OF.items() if status.verdict is not None} == {ErrorKind.TIMEOUT,
                                                                                         ErrorKind.OOM}
    assert STATUS_OF[ErrorKind.DEADLINE] == Status.NOT_ATTEMPTED and STATUS_OF[ErrorKind.TIME_LIMIT] == Status.TOO_SLOW

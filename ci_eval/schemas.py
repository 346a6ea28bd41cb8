"""The JSON Schemas of the files between jobs, generated from their contracts into schemas/
(`python -m ci_eval.schemas`); a test keeps the committed ones current."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ci_eval.contracts.plan import Plan
from ci_eval.contracts.report import Report
from ci_eval.contracts.shard import Manifest, Record, Trajectory

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def schemas() -> dict[str, dict[str, Any]]:
    return {"plan.schema.json": Plan.model_json_schema(), "manifest.schema.json": Manifest.model_json_schema(),
            "results.schema.json": Record.model_json_schema(), "report.schema.json": Report.model_json_schema(),
            "trajectory.schema.json": Trajectory.model_json_schema()}


def write_schemas(folder: Path = SCHEMAS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (folder / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMAS)

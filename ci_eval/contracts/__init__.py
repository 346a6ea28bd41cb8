"""What crosses a job boundary, typed, one module a file: `plan` (plan.json), `shard` (a shard
folder's manifest.json, results.jsonl lines and trajectory.json), `report` (report.json), and
`status`, the words an outcome is said in everywhere.

Types only: reading a file is `ci_eval.document`, a shard folder is `ci_eval.shard_folder`, the
JSON Schemas are `ci_eval.schemas`. Plan, manifest, trajectory and report carry one version
field, `schema_version`; a reader for an older file's names sits in its model.
"""

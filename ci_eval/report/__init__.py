"""Aggregate shard artifacts into report.json, JUnit XML and a Markdown summary; compare runs."""

REPORT_SCHEMA_VERSION = 1

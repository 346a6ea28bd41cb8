"""Aggregate shard artifacts into report.json, JUnit XML and a Markdown summary; compare runs."""

"""Files of earlier schema versions, read: the keys they named otherwise, moved to today's names."""

from __future__ import annotations

from typing import Any


def renamed(data: Any, names: dict[str, str], version: int | None = None) -> Any:
    """`data` with each old key moved to its new name (a new name present wins), and a file of
    the version before `version` read as `version`: what changed between the two is names alone."""
    stamped = version is not None and isinstance(data, dict) and data.get("schema_version") == version - 1
    if not isinstance(data, dict) or not (stamped or any(old in data for old in names)):
        return data  # today's file, as most are: no copy (a results.jsonl line is read this way each)
    data = dict(data)
    for old, new in names.items():
        if old in data:
            value = data.pop(old)
            data.setdefault(new, value)
    if stamped:
        data["schema_version"] = version
    return data

"""Files of earlier schema versions, read: the keys they named otherwise, moved to today's names."""

from __future__ import annotations

from typing import Any


def renamed(data: Any, names: dict[str, str], version: int | None = None) -> Any:
    """`data` with each old key moved to its new name (a new name present wins), and a file of
    the version before `version` read as `version`: what changed between the two is names alone."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in names.items():
        if old in data:
            value = data.pop(old)
            data.setdefault(new, value)
    if version is not None and data.get("schema_version") == version - 1:
        data["schema_version"] = version
    return data

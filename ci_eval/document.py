"""A JSON document read through its contract: a file of another shape, or of another schema
version, is one line saying what it is not and what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from ci_eval.errors import InputError, one_line

Contract = TypeVar("Contract", bound=BaseModel)


def read_document(path: Path, model: type[Contract], what: str, todo: str) -> Contract:
    """`path` parsed as `model`, whose `schema_version` default is the version this ci-eval reads."""
    version = model.model_fields["schema_version"].default
    try:
        parsed = model.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not {what} ({one_line(exc)}); {todo}") from None
    found = getattr(parsed, "schema_version", None)
    if found != version:
        raise InputError(f"{path} is {what} of schema version {found}; this ci-eval reads {version}")
    return parsed

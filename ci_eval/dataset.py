"""Loading a dataset: the rows of a local file (.json, .jsonl, .parquet) or a Hub dataset, each
validated into an Instance, one clear line for a row or a file that is not right."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ci_eval.errors import InputError, first_error, one_line
from ci_eval.instances import Instance

LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")


def load_instances(source: str, split: str = "test", revision: str | None = None) -> list[Instance]:
    """Load and validate every row of a local file or a Hub dataset (at `revision`; the Hub
    token, for private or rate-limited datasets, comes from HF_TOKEN)."""
    rows = _read_rows(source, split, revision)
    instances = [_validate(row, n, source) for n, row in enumerate(rows, start=1)]
    seen: set[str] = set()
    for inst in instances:
        if inst.instance_id in seen:
            raise InputError(f"{source}: instance {inst.instance_id} appears twice")
        seen.add(inst.instance_id)
    return instances


def _validate(row: Any, number: int, source: str) -> Instance:
    if not isinstance(row, dict):
        raise InputError(f"{source}: row {number} is not an object")
    try:
        return Instance.model_validate(row)
    except ValidationError as exc:
        field, message = first_error(exc)
        where = f" field {field!r}" if field else ""
        name = row.get("instance_id", "?")
        name = name[:60].encode("unicode_escape").decode() if isinstance(name, str) else "?"
        raise InputError(f"{source}: row {number} ({name}){where}: {message}; fix or remove the row") from None


def _read_rows(source: str, split: str, revision: str | None) -> list[Any]:
    path = Path(source)
    if source.endswith(LOCAL_SUFFIXES):
        if not path.is_file():
            raise InputError(f"dataset file {source} does not exist")
        return _read_file(path)
    return _read_hub(source, split, revision)


def _read_file(path: Path) -> list[Any]:
    if path.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet as pq

        try:
            return list(pq.read_table(path).to_pylist())
        except (pyarrow.ArrowException, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({one_line(exc)})") from None
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of instances")
    return data


def read_json(path: Path) -> Any:
    """A .jsonl file as a list of its lines' values, any other file as one JSON value; a
    malformed file is one line naming where."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); re-encode it as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: line {number} is not JSON: {exc.msg}") from None
        return rows
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _read_hub(name: str, split: str, revision: str | None) -> list[Any]:
    offline = not hub_reachable()
    if offline:  # its cache only: the Hub's client would spend ~25 s on retries before failing
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets comes with swebench
        raise InputError("loading from the Hub needs `datasets`: pip install datasets") from None
    try:
        return list(datasets.load_dataset(name, split=split, revision=revision))
    except Exception as exc:
        why = f"{HUB} is not reachable from here (or HF_HUB_OFFLINE is set) and the dataset is not in the local " \
            "cache" if offline else one_line(exc)
        raise InputError(
            f"cannot load dataset {name!r} split {split!r}{f' revision {revision!r}' if revision else ''} "
            f"from the Hub ({why}); check the name and network, or pass --dataset FILE.jsonl"
        ) from None


HUB = os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hub answers at all (any status), in one quick try."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    import requests

    try:
        requests.head(HUB, timeout=timeout)
    except requests.RequestException:
        return False
    return True


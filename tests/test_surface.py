"""The GitHub surface: a ci-eval setting is declared in config.py alone (the actions take it in
`settings` or as CI_EVAL_*), and v1's inputs still work through compat/v1, with a warning."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_eval.config import FORMERLY, Settings, load_settings
from tests.composite import Player
from tests.conftest import INSTANCES

ROOT = Path(__file__).resolve().parent.parent
V2_ACTIONS = [ROOT / "action.yml", *sorted(ROOT.glob("*/action.yml"))]
V2_WORKFLOW = ROOT / ".github" / "workflows" / "evaluate.yml"
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))
V1 = ROOT / "compat" / "v1"

# Settings an action needs itself: the Ollama step and its cache key go by the model and whether
# a server is given; the key is a secret input; the deadline counts from the action's own start.
THE_ACTIONS_OWN = {"model", "base_url", "api_key", "deadline_minutes"}
# CI_EVAL_* an action or script sets from something that is not a setting's input.
DERIVED = {"PRUNE_IMAGES",  # free-disk: an image is removed once used where the disk is short
           "SAMPLE_FROM",  # the baseline history the plan action fetched
           "DEADLINE_MINUTES"}  # what is left of deadline-minutes when the shard starts
# v1's setting inputs, frozen: compat/v1 may hold these and no other.
V1_SHARD = {"dataset": str(INSTANCES), "split": "dev", "instance-ids": "a__b-1 c__d-2", "predictions": "gold",
            "workers": "3", "model-slots": "2", "samples": "2", "instance-timeout": "100", "eval-timeout": "50",
            "step-limit": "7", "context-window": "4096", "max-tokens": "256", "agent-config": "agent.toml"}
V1_PLAN = {"workers": "3", "sample-size": "4", "revision": "abc123", "dataset": str(INSTANCES), "split": "dev",
           "instance-ids": "a__b-1 c__d-2"}
V1_WORKFLOW = {"sample-size": "4", "dataset": str(INSTANCES), "split": "dev", "revision": "abc123",
               "instance-ids": "a__b-1 c__d-2", "predictions": "gold", "workers": "3", "agent-config": "agent.toml"}


def declared_elsewhere(actions: list[Path], workflows: list[Path], scripts: list[Path]) -> tuple[int, list[str]]:
    """(how many declarations were read, those that declare a ci-eval setting outside config.py)."""
    settings = set(Settings.model_fields)
    read, found = 0, []
    for path in actions + workflows:
        data = yaml.safe_load(path.read_text())
        triggers = data.get(True, {}) if "runs" not in data else {"action": data}
        for trigger in triggers.values():
            for name in (trigger or {}).get("inputs", {}):
                read += 1
                if name.replace("-", "_") in settings - THE_ACTIONS_OWN:
                    found.append(f"{path.name}: input {name}")
        for variable, value in re.findall(r"\bCI_EVAL_([A-Z_]+)\s*:\s*(.*)", path.read_text()):
            read += 1
            own = variable.lower() in THE_ACTIONS_OWN and f"inputs.{variable.lower().replace('_', '-')}" in value
            if not own and variable not in DERIVED:
                found.append(f"{path.name}: CI_EVAL_{variable} from {value.strip()}")
    for path in scripts:
        for variable in re.findall(r"\bCI_EVAL_([A-Z_]+)=", path.read_text()):
            read += 1
            if variable not in DERIVED:
                found.append(f"{path.name}: sets CI_EVAL_{variable}")
    return read, found


def test_a_setting_is_declared_in_config_py_alone() -> None:
    read, found = declared_elsewhere(V2_ACTIONS, [V2_WORKFLOW], SCRIPTS)
    assert read > 40 and found == []  # the inputs of four actions and a workflow were all read


def test_the_check_finds_a_setting_declared_in_an_action(tmp_path: Path) -> None:
    action = tmp_path / "action.yml"
    action.write_text("name: x\ninputs:\n  workers:\n    default: ''\nruns:\n  using: composite\n  steps:\n"
                      "    - shell: bash\n      env:\n        CI_EVAL_STEP_LIMIT: ${{ inputs.workers }}\n"
                      "      run: 'true'\n")
    read, found = declared_elsewhere([action], [], [])
    assert read == 2 and len(found) == 2 and "input workers" in found[0] and "CI_EVAL_STEP_LIMIT" in found[1]


def test_v1_holds_v1s_setting_inputs_and_no_other() -> None:
    for path, frozen in ((V1 / "action.yml", V1_SHARD), (V1 / "plan" / "action.yml", V1_PLAN)):
        inputs = yaml.safe_load(path.read_text())["inputs"]
        deprecated = {name for name, spec in inputs.items() if "deprecationMessage" in spec}
        assert deprecated == set(frozen) | ({"config"} if path.parent == V1 else set()), path
    workflow = yaml.safe_load((V1 / ".github" / "workflows" / "evaluate.yml").read_text())
    v2 = yaml.safe_load(V2_WORKFLOW.read_text())[True]["workflow_call"]["inputs"]
    assert set(workflow[True]["workflow_call"]["inputs"]) - set(v2) == set(V1_WORKFLOW)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, config: Path | None = None) -> Settings:
    for name in [n for n in os.environ if n.startswith("CI_EVAL_") and n != "CI_EVAL_MACHINE"]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings({}, config)


def assert_v1_values(settings: Settings, given: dict[str, str]) -> None:
    expected: dict[str, Any] = {"dataset": str(INSTANCES), "split": "dev", "instance_ids": ["a__b-1", "c__d-2"],
                                "predictions": "gold", "workers": 3, "model_slots": 2, "epochs": 2,
                                "instance_timeout": 100.0, "eval_timeout": 50.0, "step_limit": 7,
                                "context_window": 4096, "max_tokens": 256, "agent_config": Path("agent.toml"),
                                "sample_size": 4, "revision": "abc123"}
    for name in given:
        field = name.replace("-", "_")
        field = FORMERLY.get(field, field)
        assert getattr(settings, field) == expected[field], field


def test_v1_shard_inputs_reach_the_v2_action_as_the_settings_they_were(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[dict[str, str], dict[str, str]]] = []

    def v2(given: dict[str, str]) -> dict[str, str]:
        seen.append((given, dict(player.step_env)))
        return {"resolved": "4", "instances": "6", "infrastructure-failures": "0", "artifact": "ci-eval-shard-0"}

    player = Player(tmp_path, {"run_attempt": "1", "token": "t"}, {"org/ci-eval": v2})
    config = tmp_path / "settings.toml"
    config.write_text("seed = 5\n")
    played = player.play(V1 / "action.yml", {"shard-index": "0", "shard-count": "1", "config": str(config),
                                             **V1_SHARD})
    assert played.outputs["resolved"] == "4" and played.outputs["artifact"] == "ci-eval-shard-0"
    assert "::warning title=Deprecated v1::" in next(iter(played.logs.values()))
    (given, env), = seen
    v2_inputs = yaml.safe_load((ROOT / "action.yml").read_text())["inputs"]
    assert set(given) <= set(v2_inputs) and given["settings"] == str(config) and given["shard-index"] == "0"
    settings = settings_from(env, monkeypatch, Path(given["settings"]))
    assert_v1_values(settings, V1_SHARD)
    assert settings.seed == 5  # v1's config file, now the settings input


def test_v1_plan_inputs_reach_the_v2_plan_action(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[dict[str, str], dict[str, str]]] = []

    def v2(given: dict[str, str]) -> dict[str, str]:
        seen.append((given, dict(player.step_env)))
        return {"matrix": '{"include": []}', "plan-artifact": "ci-eval-plan"}

    player = Player(tmp_path, {"token": "t"}, {"org/ci-eval/plan": v2})
    played = player.play(V1 / "plan" / "action.yml", {"shards": "2", **V1_PLAN})
    assert played.outputs == {"matrix": '{"include": []}', "plan-artifact": "ci-eval-plan"}
    (given, env), = seen
    assert given["shards"] == "2" and "workers" not in given
    assert_v1_values(settings_from(env, monkeypatch), V1_PLAN)


def test_v1_workflow_inputs_become_the_v2_workflows_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = V1 / ".github" / "workflows" / "evaluate.yml"
    workflow = yaml.safe_load(path.read_text())
    declared = workflow[True]["workflow_call"]["inputs"]
    call = workflow["jobs"]["evaluate"]
    v2 = yaml.safe_load(V2_WORKFLOW.read_text())[True]["workflow_call"]["inputs"]
    assert set(call["with"]) == set(v2) and call["uses"].endswith("/.github/workflows/evaluate.yml@v2")
    player = Player(tmp_path, {}, {})
    player.action, player.known_steps, player.position = path, [], 0
    given = {**V1_WORKFLOW, "dataset": 'a "quoted" name\\'}
    player.inputs = {name: given.get(name, str(spec.get("default", ""))) for name, spec in declared.items()}
    config = tmp_path / "settings.toml"
    config.write_text(player.fill(call["with"]["settings"]))
    settings = settings_from({}, monkeypatch, config)
    assert settings.dataset == 'a "quoted" name\\'  # written as a TOML string whatever it holds
    assert_v1_values(settings, {k: v for k, v in V1_WORKFLOW.items() if k != "dataset"})
    player.inputs = {name: str(spec.get("default", "")) for name, spec in declared.items()}
    assert player.fill(call["with"]["settings"]).strip() == ""  # none given: no settings at all


def test_settings_that_name_no_file_and_are_no_toml_are_one_line(tmp_path: Path) -> None:
    import subprocess

    def settings(value: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SETTINGS": value, "RUNNER_TEMP": str(tmp_path)}
        return subprocess.run(["bash", str(ROOT / "scripts" / "settings.sh"), "shard-0"], capture_output=True,
                              text=True, cwd=tmp_path, env=env)

    missing = settings("ci-eval.toml")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "neither TOML" in missing.stderr
    (tmp_path / "ci-eval.toml").write_text("workers = 1\n")
    assert settings("ci-eval.toml").stdout.strip() == str(tmp_path / "ci-eval.toml")
    text = settings("workers = 1\nseed = 2")
    assert Path(text.stdout.strip()).read_text() == "workers = 1\nseed = 2\n"
    assert settings("  \n").stdout == ""  # nothing given: no --config


def test_one_dataset_file_named_two_ways_is_one_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative or absolute, a local dataset is what it holds: one config hash."""
    from ci_eval.config import load_settings

    monkeypatch.chdir(ROOT)
    relative = "tests/fixtures/instances.jsonl"
    hashes = {load_settings({"dataset": name}).config_hash() for name in (relative, str(ROOT / relative))}
    assert len(hashes) == 1

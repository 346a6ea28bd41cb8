from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci_eval.config import load_settings
from ci_eval.contracts.shard import Record
from ci_eval.dataset import load_instances
from ci_eval.errors import InputError
from ci_eval.pool import pending_jobs
from ci_eval.redact import redact_url
from ci_eval.shard_folder import ResultStore, now, read_records, write_manifest
from tests.conftest import INSTANCES


def rec(iid: str, status: str = "resolved", attempt: int = 1) -> Record:
    passed = {"patch": "diff --git a/x b/x\n", "tests": {"FAIL_TO_PASS": {"success": ["t"]}}} \
        if status == "resolved" else {}
    return Record.model_validate({"instance_id": iid, "repo": "r/r", "status": status, "attempt": attempt,
                                  "started_at": now(), "finished_at": now(), **passed})


def test_torn_last_line_is_cut_and_appends_continue(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.append(rec("a"))
    store.close()
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('{"instance_id": "b", "sta')  # what SIGKILL mid-write leaves
    assert [r.instance_id for r in read_records(tmp_path / "results.jsonl")] == ["a"]
    store = ResultStore(tmp_path)
    store.append(rec("b"))
    store.close()
    assert [r.instance_id for r in read_records(tmp_path / "results.jsonl")] == ["a", "b"]


def test_resume_skips_finished_and_retries_infra_failures() -> None:
    instances = load_instances(str(INSTANCES))
    a, b, c, d = (i.instance_id for i in instances[:4])
    done = {(a, 0): rec(a), (b, 0): rec(b, "unresolved"), (c, 0): rec(c, "error", 1), (d, 0): rec(d, "timeout", 3)}
    jobs = pending_jobs(instances, 1, done, max_attempts=3)
    assert [(j.instance.instance_id, j.attempt) for j in jobs] == [(c, 2)] + [
        (i.instance_id, 1) for i in instances[4:]]
    assert len(pending_jobs(instances, 2, {}, 3)) == 12  # epochs multiply the jobs


def test_manifest_refuses_another_configuration(tmp_path: Path) -> None:
    from ci_eval.contracts.shard import Manifest

    def manifest(config_hash: str) -> Manifest:
        return Manifest.model_validate({"identity": {"config_hash": config_hash}, "planned": ["x"], "plan": [["x"]],
                                        "shard": {"index": 0, "of": 1, "run_attempt": 1}})

    write_manifest(tmp_path, manifest("aaa"))
    write_manifest(tmp_path, manifest("aaa"))  # the same run resuming is fine
    with pytest.raises(InputError, match="another configuration"):
        write_manifest(tmp_path, manifest("bbb"))


def test_settings_precedence_and_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ci-eval.toml"
    config.write_text('workers = 2\nmodel = "from-file"\nsplit = "dev"\n')
    monkeypatch.setenv("CI_EVAL_MODEL", "from-env")
    monkeypatch.setenv("CI_EVAL_WORKERS", "5")
    monkeypatch.setenv("CI_EVAL_API_KEY", "sk-secret-123")
    s = load_settings({"workers": 9, "model": None}, config)
    assert (s.workers, s.model, s.split, s.eval_timeout) == (9, "from-env", "dev", 1800)
    assert "sk-secret-123" not in json.dumps(s.hashed()) and "sk-secret-123" not in repr(s)
    assert s.api_key.get_secret_value() == "sk-secret-123"
    assert redact_url("https://u:sk-1@host:8443/v1?key=sk-2") == "https://host:8443/v1"
    assert load_settings({"workers": 1}).config_hash() == load_settings({"workers": 8}).config_hash()
    assert load_settings({"model": "a"}).config_hash() != load_settings({"model": "b"}).config_hash()

"""Bad input of every kind: one line on stderr that says what to do, exit 2, nothing written
outside --output, and never a traceback."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ci_eval.errors import InputError
from ci_eval.shard_folder import log_dir, within
from tests.conftest import INSTANCES, rows
from tests.test_cli import one_line_error, run

CALC_1 = "ci-eval-fixtures__calc-1"


def dataset(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "dataset.jsonl"
    path.write_text(json.dumps({**rows()[0], **changes}) + "\n")
    return path


def shard(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("shard", "--index", "0", "--of", "1", "--sandbox", "local", "--output", str(tmp_path / "out"), *args)


@pytest.mark.parametrize("bad_id", ["/tmp/ci-eval-escape", "../../escape", "a" * 300, "nul\x00id", "", "-flag"])
def test_instance_ids_that_could_leave_the_folder_are_refused(tmp_path: Path, bad_id: str) -> None:
    one_line_error(shard(tmp_path, "--dataset", str(dataset(tmp_path, instance_id=bad_id)), "--predictions", "gold"),
                   "row 1", "instance id")
    assert not (tmp_path / "out" / "results.jsonl").exists()
    assert not Path("/tmp/ci-eval-escape").exists()


def test_every_log_path_is_built_inside_the_shard_folder(tmp_path: Path) -> None:
    assert log_dir(tmp_path, CALC_1, 0) == tmp_path.resolve() / "logs" / CALC_1 / "epoch-0"
    for escape in ("../../x", "/tmp/x", ".."):
        with pytest.raises(InputError, match="outside"):
            log_dir(tmp_path, escape, 0)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "link").symlink_to("/tmp")
    with pytest.raises(InputError, match="outside"):
        within(tmp_path, "logs", "link", "x")


def test_a_dataset_file_that_is_not_utf8_or_not_parquet(tmp_path: Path) -> None:
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(rows()[0]).encode().replace(b"median()", b"m\xe9dian()") + b"\n")
    one_line_error(run("plan", "--of", "1", "--dataset", str(latin)), "not UTF-8")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    one_line_error(run("plan", "--of", "1", "--dataset", str(corrupt)), "not a readable Parquet file")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_line_error(run("plan", "--of", "1", "--dataset", str(empty)), "the dataset has no instances")


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("eval_type", "pass_or_fail", "eval_type"),
    ("log_parser", "parse_log_nothing", "log_parser"),
    ("FAIL_TO_PASS", "[not json", "FAIL_TO_PASS"),
    ("problem_statement", "lone \ud800 surrogate", "lone surrogate"),
])
def test_each_invalid_field_of_a_row_is_one_line_naming_it(tmp_path: Path, field: str, value: str, needle: str) -> None:
    one_line_error(run("plan", "--of", "1", "--dataset", str(dataset(tmp_path, **{field: value}))), "row 1", needle)


def test_bad_settings_and_an_unwritable_output(tmp_path: Path) -> None:
    one_line_error(shard(tmp_path, "--dataset", str(INSTANCES), "--predictions", "gold", "--memory-limit", "banana"),
                   "memory_limit", "banana")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES), "--predictions", "gold",
                 "--sandbox", "local", "--output", str(blocker / "out"))
    one_line_error(result, "cannot write to --output")
    typo = tmp_path / "ci-eval.toml"
    typo.write_text("step_limt = 20\n")
    one_line_error(shard(tmp_path, "--dataset", str(INSTANCES), "--config", str(typo)),
                   f"{typo}: unknown setting 'step_limt' (did you mean 'step_limit'?)")


@pytest.mark.parametrize("patch", [7, {"diff": "x"}, ["a"], "lone \ud800 surrogate"])
def test_a_prediction_that_is_not_a_patch_is_one_line_before_any_work(tmp_path: Path, patch: object) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"instance_id": CALC_1, "model_name_or_path": "m", "model_patch": patch}) + "\n")
    one_line_error(shard(tmp_path, "--dataset", str(INSTANCES), "--instance-ids", CALC_1, "--predictions", str(preds)),
                   "prediction 1")
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_duplicate_predictions_are_named(tmp_path: Path) -> None:
    preds = tmp_path / "preds.jsonl"
    line = json.dumps({"instance_id": CALC_1, "model_name_or_path": "m", "model_patch": ""}) + "\n"
    preds.write_text(line + line)
    one_line_error(shard(tmp_path, "--dataset", str(INSTANCES), "--instance-ids", CALC_1, "--predictions", str(preds)),
                   "more than one prediction", CALC_1)


def manifest(**changes: object) -> dict[str, object]:
    good: dict[str, object] = {"schema": 1, "identity": {"model": "m"}, "shard": {"index": 0, "of": 1, "attempt": 1},
                               "planned": [CALC_1], "plan": [[CALC_1]], "samples": 1}
    return {**good, **changes}


@pytest.mark.parametrize("bad", [
    [1, 2],
    manifest(identity="m"),
    manifest(shard={"index": "zero", "of": 1, "attempt": 1}),
    manifest(shard={"index": 3, "of": 1, "attempt": 1}),
    manifest(plan="all"),
    manifest(planned=["someone-else"]),
    manifest(samples=0),
])
def test_an_aggregate_manifest_of_the_wrong_shape(tmp_path: Path, bad: object) -> None:
    (tmp_path / "shard-0").mkdir()
    (tmp_path / "shard-0" / "manifest.json").write_text(json.dumps(bad))
    one_line_error(run("aggregate", str(tmp_path), "--output", str(tmp_path / "report")),
                   "is not a ci-eval manifest")


def test_sigint_while_the_model_server_is_checked_exits_130(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "ci_eval", "shard", "--index", "0", "--of", "1", "--dataset", str(INSTANCES),
             "--sandbox", "local", "--base-url", f"http://127.0.0.1:{port}/v1", "--output", str(tmp_path / "o")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (tmp_path / "o" / "manifest.json").exists():  # written just before the check
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume" in err


def test_an_unreachable_hub_is_one_line_at_once_not_after_the_clients_retries(tmp_path: Path) -> None:
    """Offline, the Hub's client retries for ~25 s before it fails: a quick probe says it first."""
    import os

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    done = subprocess.run([sys.executable, "-m", "ci_eval", "plan", "--of", "1", "--dataset", "someone/some-set"],
                          env={**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")},
                          capture_output=True, text=True, timeout=120, check=False)
    one_line_error(done, f"http://127.0.0.1:{port} is not reachable from here", "pass --dataset FILE.jsonl")

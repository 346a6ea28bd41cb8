"""`ci-eval shard` on the real Docker engine: every status the grader can give, and cleanup."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from ci_eval.shard import run_shard
from ci_eval.shard_folder import read_records
from tests.conftest import need, ours, rows, settings, write_predictions

pytestmark = pytest.mark.docker

CALC_1 = "ci-eval-fixtures__calc-1"
CALC_3 = "ci-eval-fixtures__calc-3"  # its failing test hangs until fixed

# Changes the code but not the behaviour under test: applies, and the tests still fail.
WRONG_CALC_1 = """\
diff --git a/calc/stats.py b/calc/stats.py
--- a/calc/stats.py
+++ b/calc/stats.py
@@ -1,4 +1,5 @@
 def median(xs):
     \"\"\"The median of a non-empty sequence of numbers.\"\"\"
+    # TODO: even-length input
     ordered = sorted(xs)
     middle = len(ordered) // 2
"""
NOT_A_FIX_CALC_3 = """\
diff --git a/calc/roots.py b/calc/roots.py
--- a/calc/roots.py
+++ b/calc/roots.py
@@ -1,5 +1,6 @@
 def isqrt(n):
     \"\"\"The largest integer r with r * r <= n, for n >= 0.\"\"\"
+    # a comment does not stop the loop
     x = n
     while x * x != n:
         x = (x + n // x) // 2
"""
# Context that exists nowhere in the file: no strategy of the official chain can apply it.
DOES_NOT_APPLY = """\
diff --git a/calc/stats.py b/calc/stats.py
--- a/calc/stats.py
+++ b/calc/stats.py
@@ -10,3 +10,3 @@ def mode(xs):
     counts = {}
-    for x in xs:
+    for x in sorted(xs):
         counts[x] = counts.get(x, 0) + 1
"""


def statuses(folder: Path) -> dict[str, str]:
    return {r.instance_id: r.status for r in read_records(folder / "results.jsonl")}


def test_gold_patches_all_resolve(docker_client: Any, tmp_path: Path) -> None:
    since = int(time.time()) - 1
    result = run_shard(settings(tmp_path, predictions="gold", sandbox="docker"), 0, 1)
    pulls = docker_client.events(since=since, until=int(time.time()) + 1, decode=True,
                                 filters={"type": "image", "event": "pull"})
    assert list(pulls) == []  # the images were present: nothing was pulled
    assert statuses(result.folder) == {row["instance_id"]: "resolved" for row in rows()}
    for record in result.records.values():
        assert record.tests.FAIL_TO_PASS.failure == [] and record.tests.FAIL_TO_PASS.success
        assert (result.folder / "logs" / record.instance_id / "epoch-0" / "test_output.txt").stat().st_size > 0
    assert ours(docker_client, result.folder) == []


def test_large_non_utf8_output_is_kept_and_graded(docker_client: Any, tmp_path: Path) -> None:
    iid = "ci-eval-fixtures__textkit-6"
    result = run_shard(settings(tmp_path, predictions="gold", sandbox="docker", instance_ids=[iid]), 0, 1)
    log = result.folder / "logs" / iid / "epoch-0" / "test_output.txt"
    assert log.stat().st_size > 4_000_000
    assert "\ufffd" in log.read_text(encoding="utf-8")  # bad bytes replaced, not fatal
    assert statuses(result.folder) == {iid: "resolved"}


def test_empty_predictions_are_empty_patch(docker_client: Any, tmp_path: Path) -> None:
    preds = write_predictions(tmp_path / "empty.jsonl", {row["instance_id"]: "" for row in rows()})
    result = run_shard(settings(tmp_path, predictions=str(preds), sandbox="docker"), 0, 1)
    assert set(statuses(result.folder).values()) == {"empty_patch"}


def test_wrong_and_unappliable_and_hanging_patches(docker_client: Any, tmp_path: Path) -> None:
    preds = write_predictions(tmp_path / "p.jsonl", {CALC_1: WRONG_CALC_1, CALC_3: NOT_A_FIX_CALC_3,
                                                     "ci-eval-fixtures__calc-2": DOES_NOT_APPLY})
    cfg = settings(tmp_path, predictions=str(preds), sandbox="docker", eval_timeout=8, max_attempts=3,
                   instance_ids=[CALC_1, CALC_3, "ci-eval-fixtures__calc-2"])
    result = run_shard(cfg, 0, 1)
    assert statuses(result.folder) == {CALC_1: "unresolved", CALC_3: "timeout",
                                       "ci-eval-fixtures__calc-2": "patch_failed"}
    wrong = result.records[(CALC_1, 0)]
    assert wrong.tests.FAIL_TO_PASS.failure == ["tests/test_stats.py::test_median_even"]
    assert wrong.tests.PASS_TO_PASS.success == ["tests/test_stats.py::test_median_odd"]
    hung = result.records[(CALC_3, 0)]
    assert hung.error is not None and hung.error.kind == "timeout"
    assert 8 <= hung.timings.eval < 30
    assert ours(docker_client, result.folder) == []
    # A patch that makes the tests hang is a wrong answer: not an infrastructure failure, not retried.
    assert result.infra_failures == 0 and run_shard(cfg, 0, 1).ran == 0


def test_missing_image_is_an_infra_error_retried_on_resume(docker_client: Any, tmp_path: Path) -> None:
    row = {**rows()[0], "instance_id": "ghost__repo-1", "image": "ci-eval-fixtures/absent:0"}
    dataset = tmp_path / "ghost.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    cfg = settings(tmp_path, dataset=str(dataset), predictions="gold", sandbox="docker", max_attempts=2)
    first = run_shard(cfg, 0, 1).records[("ghost__repo-1", 0)]
    assert first.status == "error" and first.error is not None and first.error.kind == "image"
    assert "ci-eval-fixtures/absent:0" in first.error.message
    second = run_shard(cfg, 0, 1)
    assert second.ran == 1 and second.records[("ghost__repo-1", 0)].attempt == 2
    third = run_shard(cfg, 0, 1)  # attempts used up: reported as an error, not retried forever
    assert third.ran == 0
    lines = read_records(tmp_path / "out" / "results.jsonl")
    assert [r.attempt for r in lines] == [1, 2]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on a loopback port: Docker trusts 127.0.0.0/8."""
    exe = shutil.which("docker-registry")
    if exe is None:
        need("docker-registry", "CI_EVAL_REQUIRE_DOCKER", "it is not installed (apt-get install docker-registry)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'blobs'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([str(exe), "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def pulls_since(client: Any, since: int) -> list[dict[str, Any]]:
    return list(client.events(since=since, until=int(time.time()) + 1, decode=True,
                              filters={"type": "image", "event": "pull"}))


def test_missing_image_is_pulled_once_and_never_again(docker_client: Any, registry: str, tmp_path: Path) -> None:
    image = f"{registry}/ci-eval-fixtures/calc:pull-test"
    docker_client.images.get("ci-eval-fixtures/calc:1.0").tag(image)
    for line in docker_client.images.push(image, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(image)  # the tag only: the layers stay, the name is gone
    dataset = tmp_path / "pull.jsonl"
    dataset.write_text(json.dumps({**rows()[1], "image": image}) + "\n")
    try:
        since = int(time.time()) - 1
        pattern = {"image_pattern": r"127\.0\.0\.1:[0-9]+/ci-eval-fixtures/.*"}  # a registry of its own
        first = run_shard(settings(tmp_path / "a", dataset=str(dataset), predictions="gold", sandbox="docker",
                                   **pattern), 0, 1)
        assert [r.status for r in first.records.values()] == ["resolved"]
        assert len(pulls_since(docker_client, since)) == 1
        since = int(time.time())
        run_shard(settings(tmp_path / "b", dataset=str(dataset), predictions="gold", sandbox="docker", **pattern), 0, 1)
        assert pulls_since(docker_client, since) == []  # present now: not pulled again
    finally:
        docker_client.images.remove(image)


def test_prune_images_frees_each_image_after_its_last_use(docker_client: Any, tmp_path: Path) -> None:
    image = "ci-eval-fixtures/calc:prune-test"
    docker_client.images.get("ci-eval-fixtures/calc:1.0").tag(image)
    dataset = tmp_path / "prune.jsonl"
    dataset.write_text("".join(json.dumps({**row, "image": image}) + "\n" for row in rows()[:2]))
    result = run_shard(settings(tmp_path, dataset=str(dataset), predictions="gold", sandbox="docker",
                                prune_images=True), 0, 1)
    assert [r.status for r in result.records.values()] == ["resolved", "resolved"]  # the 2nd ran before it went
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image)
    docker_client.images.get("ci-eval-fixtures/calc:1.0")  # another name for the same layers stays


def test_an_image_template_pulls_each_instance_from_another_registry(docker_client: Any, registry: str,
                                                                      tmp_path: Path) -> None:
    """The dataset's rows name the official images; --image-template maps each instance to its
    image in a registry of one's own (as Epoch AI's on ghcr.io), pulled from there, and only
    that registry's images may run."""
    row = rows()[1]
    image = f"{registry}/mirror/sweb.eval.{row['instance_id']}:latest"
    docker_client.images.get(row["image"]).tag(image)
    for line in docker_client.images.push(image, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(image)
    template = f"{registry}/mirror/sweb.eval.{{instance_id}}:latest"
    try:
        since = int(time.time()) - 1
        done = run_shard(settings(tmp_path / "a", instance_ids=[row["instance_id"]], predictions="gold",
                                  sandbox="docker", image_template=template), 0, 1)
        assert [r.status for r in done.records.values()] == ["resolved"]
        assert [e["id"] for e in pulls_since(docker_client, since)] == [image]
    finally:
        docker_client.images.remove(image)

"""The Docker-free path: the bundled demo works with Python alone."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from ci_eval.sandbox import OutputCap
from ci_eval.sandbox.local import LocalSandbox
from ci_eval.shard import run_shard
from tests.conftest import FIXTURES, need, rows, settings, write_predictions


def test_gold_and_wrong_patches_locally(tmp_path: Path) -> None:
    result = run_shard(settings(tmp_path, predictions="gold", sandbox="local", repos_dir=FIXTURES / "repos"), 0, 1)
    assert {r.instance_id: r.status for r in result.records.values()} == {
        row["instance_id"]: "resolved" for row in rows()}
    textkit_fix = rows()[3]["patch"]  # a patch for the other repository cannot apply
    preds = write_predictions(tmp_path / "p.jsonl", {"ci-eval-fixtures__calc-2": textkit_fix})
    other = settings(tmp_path / "b", predictions=str(preds), sandbox="local", instance_ids=["ci-eval-fixtures__calc-2"],
                     repos_dir=FIXTURES / "repos", eval_timeout=60)
    assert run_shard(other, 0, 1).records[("ci-eval-fixtures__calc-2", 0)].status == "patch_failed"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    (tmp_path / "testbed").mkdir()
    box = LocalSandbox(tmp_path)
    marker = tmp_path / "child-survived"
    start = time.monotonic()
    out = asyncio.run(box.execute(f"(sleep 3; touch {marker}) & echo started; sleep 60", timeout=1))
    assert out.timed_out and "started" in out.output and time.monotonic() - start < 10
    time.sleep(3.5)
    assert not marker.exists()


def test_default_output_is_a_folder_per_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = settings(tmp_path, predictions="gold", sandbox="local", repos_dir=FIXTURES / "repos", output=None,
                   instance_ids=["ci-eval-fixtures__calc-2", "ci-eval-fixtures__textkit-5"])
    assert run_shard(cfg, 1, 2).folder == Path("ci-eval-results") / "shard-1"
    assert (tmp_path / "ci-eval-results" / "shard-1" / "results.jsonl").read_text().count("\n") == 1


SMALL = OutputCap(keep=256 * 1024, flood=4 * 1024 * 1024)


def test_a_flood_ends_every_time(tmp_path: Path) -> None:
    """`yes` floods: its group is killed and what is still in the pipe drained to EOF, so the
    command ends. Three floods at once, 4 times, while another task hogs the event loop (as a
    busy shard does, so that the readers fall behind and their pipes pause): none may hang. The
    cap is 4 MiB, not the agent's 32: far past what a pipe holds, an eighth of the bytes."""
    (tmp_path / "testbed").mkdir()
    sandbox = LocalSandbox(tmp_path)

    async def hog(stop: asyncio.Event) -> None:
        while not stop.is_set():
            time.sleep(0.01)  # the loop is blocked: readers fall behind, buffers fill
            await asyncio.sleep(0)

    async def floods() -> list[bool]:
        stop = asyncio.Event()
        busy = asyncio.create_task(hog(stop))
        ended = []
        for _ in range(4):
            outs = await asyncio.wait_for(asyncio.gather(*(sandbox.execute("yes", 60, SMALL) for _ in range(3))), 60)
            ended += [o.flooded for o in outs]
        stop.set()
        await busy
        return ended

    assert asyncio.run(floods()) == [True] * 12


def isolated_box(tmp_path: Path) -> Any:
    """An isolated local sandbox over the calc fixture (Linux, root), as grading opens one."""
    from ci_eval.instances import Instance
    from ci_eval.sandbox import isolation
    from ci_eval.sandbox.local import LocalBackend

    if not isolation.available():
        need("local isolation", "CI_EVAL_REQUIRE_DOCKER", "it needs Linux, root, bwrap and setpriv")
    backend = LocalBackend(FIXTURES / "repos", isolated=True)
    return backend.create(Instance.model_validate(rows()[0]), network=False)


def test_a_python_under_a_private_folder_in_tmp_stays_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A venv in a `mktemp -d` folder (0700) under /tmp: the sandbox's own /tmp replaces /tmp,
    and the private folder is still covered and the venv bound back (it failed to mount)."""
    from ci_eval.sandbox import isolation

    private = Path(tempfile.mkdtemp(dir="/tmp"))  # mode 0700, as mktemp -d makes it
    try:
        venv = private / "venv"
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "marker").write_text("here\n")
        monkeypatch.setattr(isolation, "_interpreter", lambda: (str(venv),))

        async def look() -> Any:
            async with isolated_box(tmp_path) as box:
                return await box.execute(f"cat {venv}/bin/marker && ls {private}", 30)

        out = asyncio.run(look())
        assert out.returncode == 0 and out.output.splitlines() == ["here", "venv"], out.output
    finally:
        shutil.rmtree(private)


def test_a_sandbox_that_cannot_be_set_up_is_an_infrastructure_error(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ci_eval.errors import InfraError
    from ci_eval.sandbox import isolation

    monkeypatch.setattr(isolation, "_interpreter", lambda: (str(tmp_path / "no-such-python"),))

    async def run() -> Any:
        async with isolated_box(tmp_path) as box:
            return await box.execute("exit 0", 30)

    with pytest.raises(InfraError, match="could not be set up") as caught:
        asyncio.run(run())
    assert caught.value.kind == "sandbox"
    # … and a command that fails by itself, even with the set-up's exit code, is the command's.
    monkeypatch.undo()

    async def own() -> Any:
        async with isolated_box(tmp_path) as box:
            return await box.execute("echo 'ci-eval: the sandbox could not be set up: fake'; exit 125", 30)

    assert asyncio.run(own()).returncode == 125
    # Through grading: the gold patch in a sandbox that cannot be set up is an error, not patch_failed.
    monkeypatch.setattr(isolation, "_interpreter", lambda: (str(tmp_path / "no-such-python"),))
    cfg = settings(tmp_path / "g", predictions="gold", sandbox="local", repos_dir=FIXTURES / "repos",
                   instance_ids=[rows()[0]["instance_id"]], max_attempts=1)
    record = run_shard(cfg, 0, 1).records[(rows()[0]["instance_id"], 0)]
    assert record.status == "error" and record.error is not None and record.error.kind == "sandbox"


def test_what_one_sandbox_writes_where_anyone_may_write_no_other_sees(tmp_path: Path) -> None:
    """The attack: pytest.ini and conftest.py in /var/tmp (and /dev/shm, /run/lock), where
    pytest's rootdir search from a later sandbox's testbed would find them."""
    from ci_eval.sandbox import isolation

    shared = [d for d in ("/var/tmp", "/dev/shm", "/run/lock", "/tmp") if d in isolation.shared_folders()]
    assert "/var/tmp" in shared and "/tmp" in shared
    plant = "; ".join(f"echo '[pytest]' > {d}/pytest.ini && echo import os > {d}/conftest.py" for d in shared)

    async def two() -> tuple[Any, Any, list[Path]]:
        async with isolated_box(tmp_path) as first:
            planted = await first.execute(plant + "; cat /var/tmp/pytest.ini", 30)
        async with isolated_box(tmp_path) as second:
            seen = await second.execute(" ; ".join(f"ls {d}/pytest.ini {d}/conftest.py" for d in shared), 30)
            # no folder above a sandbox's testbed may be written by others: pytest's search finds nothing planted
            open_above = [p for p in (second.root / "testbed").parents if p.stat().st_mode & 0o002]
            return planted, seen, open_above

    planted, seen, open_above = asyncio.run(two())
    assert planted.returncode == 0 and "[pytest]" in planted.output, planted.output
    assert seen.returncode != 0 and seen.output.count("No such file") == 2 * len(shared), seen.output
    for d in shared:  # nothing reached the host's own folders
        assert not Path(d, "pytest.ini").exists() and not Path(d, "conftest.py").exists()
    assert open_above == []


def test_an_isolated_command_sees_its_testbed_and_nothing_of_the_hosts(tmp_path: Path) -> None:
    """The attack: ci-eval's /proc/PID/cmdline names --dataset, whose rows hold the gold patches.
    A PID namespace with its own /proc, and a root of the sandbox's own (pivot_root)."""
    from tests.conftest import INSTANCES

    secret = Path(tempfile.mkdtemp(dir="/var/tmp")) / "gold.jsonl"  # a dataset outside /tmp, mode 644
    secret.write_text("GOLD PATCHES\n")
    secret.chmod(0o644)
    look = (f"cat {INSTANCES} {secret} 2>&1; echo pids=$(ls /proc | grep -c '^[0-9]'); "
            "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c -- '--datase[t]'; "
            "ls /work /root 2>&1; ls; python3 -c 'import pytest; print(\"pytest\", pytest.__version__)'")

    async def run() -> Any:
        async with isolated_box(tmp_path) as box:
            return await box.execute(look, 30)

    try:
        out = asyncio.run(run())
    finally:
        shutil.rmtree(secret.parent)
    text = out.output
    assert "GOLD PATCHES" not in text and "ci-eval-fixtures__calc-1" not in text, text
    assert text.count("No such file or directory") >= 2
    pids = int(text.split("pids=")[1].split()[0])
    assert pids <= 6, text  # its own shell and what it started, not the host's processes
    assert "\n0\n" in text  # no process with --dataset in its command line is visible
    assert "calc" in text.split() and "pytest " in text  # its testbed and the tests' Python are there

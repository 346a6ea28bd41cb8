"""What keeps a local sandbox's commands from ci-eval, the grader and their neighbours, where the
machine allows it (Linux, ci-eval running as root): a uid of its own per sandbox, a /tmp of its
own and no network (a private mount and network namespace), no way back to privileges
(`setpriv --no-new-privs`), and the Python that runs ci-eval and the tests mounted read-only.

A separate uid cannot read ci-eval's /proc/PID/environ (the API key, a CI token), cannot write
a `.pth` into ci-eval's site-packages, and cannot enter another sandbox's folder (0700, owned by
that sandbox's uid). Unprivileged user namespaces are not needed (AppArmor blocks them on
ubuntu-24.04 runners): `unshare` and `setpriv` run as root, then drop to the uid.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

BASE = Path("/var/tmp/ci-eval")  # not under /tmp: each sandbox mounts a /tmp of its own
UIDS = range(61000, 61256)  # one per open sandbox, claimed across processes with a lock file

# Runs as root in the new namespaces: the interpreter trees staged (covering /tmp or a private home
# hides them), a /tmp of the sandbox's own, the trees bound back read-only, then the drop.
_SETUP = r"""
set -eu
stage=$1 tmp=$2 uid=$3 cmd=$4 hide=$5
shift 5
n=0
for tree in "$@"; do mkdir -p "$stage/$n"; mount --bind "$tree" "$stage/$n"; n=$((n + 1)); done
mount --bind "$tmp" /tmp  # before the trees come back: a venv under /tmp must stay visible
for dir in $hide; do mount -t tmpfs -o mode=0755,size=1m tmpfs "$dir"; done
n=0
for tree in "$@"; do
  mkdir -p "$tree"; mount --bind "$stage/$n" "$tree"; mount -o remount,bind,ro "$tree"; n=$((n + 1))
done
exec setpriv --reuid "$uid" --regid "$uid" --clear-groups --no-new-privs -- bash -c "$cmd"
"""


def available() -> bool:
    return (sys.platform == "linux" and os.geteuid() == 0
            and all(shutil.which(tool) for tool in ("unshare", "setpriv", "mount")))


@contextmanager
def claim_uid() -> Iterator[int]:
    """A uid no other open sandbox on this machine has, for as long as the sandbox is open."""
    folder = base() / "uids"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for uid in UIDS:
        handle: IO[str] = (folder / str(uid)).open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield uid
        finally:
            _kill_all(uid)  # whatever it left running (a daemon that left the group) goes too
            handle.close()
        return
    raise RuntimeError(f"all {len(UIDS)} sandbox uids are in use")


def give(root: Path, uid: int) -> None:
    """The sandbox's folder to its uid alone (0700): the agent owns its work tree and nothing else."""
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.lchown(Path(folder) / name, uid, uid)
    os.chown(root, uid, uid)
    root.chmod(0o700)


def argv(command: str, root: Path, uid: int, network: bool) -> list[str]:
    """The command line that runs `command` isolated, as `uid`, in `root`'s namespaces."""
    hidden, trees = _interpreter()
    return ["unshare", "--mount", "--propagation", "private", *([] if network else ["--net"]), "--",
            "/bin/sh", "-c", _SETUP, "sh", str(root / ".stage"), str(root / "tmp"), str(uid), command,
            hidden, *trees]


@functools.cache  # the same for every command of the process: looked up once, not per command
def _interpreter() -> tuple[str, tuple[str, ...]]:
    """The Python trees to bind read-only, and the private folders above them to cover."""
    trees = tuple(sorted({sys.prefix, sys.base_prefix}))
    return " ".join(sorted({h for t in trees if (h := _hidden_above(Path(t)))})), trees


@functools.cache
def base() -> Path:
    """Where isolated sandboxes live: passable, not listable (a sandbox's name is its own)."""
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o711)
    return BASE


def _hidden_above(tree: Path) -> str:
    """The highest folder above `tree` another user cannot pass through (a private home), or ''."""
    for parent in reversed(tree.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return str(parent)
    return ""


def _kill_all(uid: int) -> None:
    if shutil.which("pkill"):
        subprocess.run(["pkill", "-KILL", "-u", str(uid)], capture_output=True, check=False)

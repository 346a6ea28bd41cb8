"""What keeps a local sandbox's commands from ci-eval, the grader and their neighbours, where the
machine allows it (Linux, ci-eval running as root): a uid of its own per sandbox, its own copy of
every folder anyone may write (/tmp, /var/tmp, /dev/shm, /run/lock, …) and no network (a private
mount and network namespace), no way back to privileges (`setpriv --no-new-privs`), and the
Python that runs ci-eval and the tests mounted read-only. The sandboxes live under /var/lib,
where no folder above them is writable by others: pytest's search for a configuration climbs
from the testbed to /, and a world-writable folder on the way would let one sandbox plant a
pytest.ini or conftest.py for every later one.

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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

BASE = Path("/var/lib/ci-eval")  # no folder above it is writable by others
UIDS = range(61000, 61256)  # one per open sandbox, claimed across processes with a lock file
# Where a world-writable folder may be (the ones that exist are found once, with any others
# one or two levels below / that anyone may write).
SHARED_CANDIDATES = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/crash", "/var/metrics")

# Runs as root in the new mount, PID (and network) namespaces: a root of the sandbox's own (a
# tmpfs) holding the system read-only, the Python trees read-only, the sandbox's folder and its own
# copy of every shared folder, a /proc of the new PID namespace; pivot_root into it, so that nothing
# else of the host (its datasets, its home folders, its processes) can be seen; the ready mark; the
# drop. A step that fails stops before the command with exit 125 and no mark: infrastructure.
_SETUP = r"""
set -eu
box=$1 uid=$2 cmd=$3 binds=$4 ready=$5
shift 5
mark=
fail() {
  [ -z "$mark" ] || rm -f "$mark"
  echo "ci-eval: the sandbox could not be set up: $*" >&2
  exit 125
}
ro() {
  { mkdir -p "$new$1" && mount --rbind "$1" "$new$1" && mount -o remount,bind,ro "$new$1"; } || fail "$1 read-only"
}
here=$(pwd)
new=$box/.root
{ mkdir -p "$new" && mount -t tmpfs -o mode=0755,size=16m tmpfs "$new"; } || fail "a root of its own"
for dir in /usr /etc /bin /sbin /lib /lib32 /lib64 /libx32 /sys; do
  if [ -L "$dir" ]; then ln -s "$(readlink "$dir")" "$new$dir" || fail "$dir"; elif [ -d "$dir" ]; then ro "$dir"; fi
done
{ mkdir -p "$new/dev" && mount --rbind /dev "$new/dev"; } || fail "/dev"
{ mkdir -p "$new$box" && mount --bind "$box" "$new$box"; } || fail "its folder"
for pair in $binds; do  # after /dev (/dev/shm), before the trees (a venv under /tmp stays visible)
  { mkdir -p "$new${pair#*=}" && mount --bind "${pair%%=*}" "$new${pair#*=}"; } || fail "a private ${pair#*=}"
done
for tree in "$@"; do ro "$tree"; done
{ mkdir -p "$new/proc" && mount -t proc proc "$new/proc"; } || fail "/proc of its own"
{ mkdir -p "$new/.host" && cd "$new" && pivot_root . .host && cd "$here"; } || fail "pivot_root"
mark=/.host$ready
touch "$mark" || fail "the ready mark"
{ umount -l /.host && rmdir /.host; } || fail "leaving the host's root"
exec setpriv --reuid "$uid" --regid "$uid" --clear-groups --no-new-privs -- bash -c "$cmd"
"""


def available() -> bool:
    return (sys.platform == "linux" and os.geteuid() == 0
            and all(shutil.which(tool) for tool in ("unshare", "setpriv", "mount", "pivot_root")))


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


def argv(command: str, root: Path, uid: int, network: bool, ready: Path) -> list[str]:
    """The command line that runs `command` isolated, as `uid`, in `root`'s namespaces; `ready`
    is touched (as root, where the sandbox cannot write) once the set-up is done."""
    binds = " ".join(f"{own}={shared}" for own, shared in private_copies(root))
    return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", *([] if network else ["--net"]),
            "--", "/bin/sh", "-c", _SETUP, "sh", str(root), str(uid), command, binds, str(ready), *_interpreter()]


def private_copies(root: Path) -> list[tuple[Path, str]]:
    """(the sandbox's own folder, the shared folder it stands in for), /tmp first."""
    return [(root / "shared" / str(n), shared) for n, shared in enumerate(shared_folders())]


@functools.cache
def shared_folders() -> tuple[str, ...]:
    """Every folder anyone may write: the known ones that exist, and any others one or two levels
    below / (not /proc or /sys), without a space (the set-up splits on spaces)."""
    found = [d for d in SHARED_CANDIDATES if _world_writable(Path(d))]
    for top in Path("/").iterdir():
        if top.name in ("proc", "sys") or top.is_symlink() or not top.is_dir():
            continue
        for folder in [top, *_children(top)]:
            if _world_writable(folder) and str(folder) not in found and " " not in str(folder):
                found.append(str(folder))
    return tuple(found)


def _children(folder: Path) -> list[Path]:
    try:
        return [c for c in folder.iterdir() if c.is_dir() and not c.is_symlink()]
    except OSError:
        return []


def _world_writable(folder: Path) -> bool:
    try:
        info = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and bool(info.st_mode & stat.S_IWOTH)


def ready_mark() -> Path:
    """A path the sandbox's set-up touches when it is done; only root can write its folder."""
    return _ready_folder() / uuid.uuid4().hex


@functools.cache  # made once per process, not per command
def _ready_folder() -> Path:
    folder = base() / "ready"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


@functools.cache  # the same for every command of the process: looked up once, not per command
def _interpreter() -> tuple[str, ...]:
    """The Python trees to bind read-only (a venv's and the one it was made from)."""
    return tuple(sorted({sys.prefix, sys.base_prefix}))


@functools.cache
def base() -> Path:
    """Where isolated sandboxes live: passable, not listable (a sandbox's name is its own), with
    no folder above it that another user could write."""
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o711)
    open_above = [str(p) for p in BASE.parents if p.stat().st_mode & stat.S_IWOTH]
    if open_above:
        raise RuntimeError(f"{open_above[0]} is writable by others: no sandbox can live below it")
    return BASE


def _kill_all(uid: int) -> None:
    if shutil.which("pkill"):
        subprocess.run(["pkill", "-KILL", "-u", str(uid)], capture_output=True, check=False)

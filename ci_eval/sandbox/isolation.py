"""What keeps a local sandbox's commands from ci-eval, the grader and their neighbours, where the
machine allows it (Linux, ci-eval running as root, bubblewrap installed): bubblewrap (`bwrap`,
Flatpak's sandbox, and that of several agent CLIs) gives each command a root of its own with the
system and the Python trees read-only, its own /proc (a PID namespace), /dev, IPC and, for the
grader and by default for the agent, network; then `setpriv` drops it to a uid of its own per
sandbox, with no way back to privileges (`--no-new-privs`). Every folder anyone may write (/tmp,
/var/tmp, /dev/shm, /run/lock, …) is the sandbox's own copy. The sandboxes live under /var/lib,
where no folder above them is writable by others: pytest's search for a configuration climbs
from the testbed to /, and a world-writable folder on the way would let one sandbox plant a
pytest.ini or conftest.py for every later one.

No path the agent can write is ever a mount source: a sandbox's folder and its `shared/` stay
root's (0711: passable, not listable, not writable), and only what lies below them (the testbed,
the scratch folder, each private copy) is the sandbox uid's, so the agent can fill its copies but
never swap one for a link to a host folder. A separate uid cannot read ci-eval's
/proc/PID/environ (the API key, a CI token), cannot write a `.pth` into ci-eval's site-packages,
and cannot enter another sandbox's folder. Unprivileged user namespaces are not needed (AppArmor
blocks them on ubuntu-24.04 runners): bwrap runs as root, and setpriv drops to the uid inside.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

BASE = Path("/var/lib/ci-eval")  # no folder above it is writable by others
UIDS = range(61000, 61256)  # one per open sandbox, claimed across processes with a lock file
# Where a world-writable folder may be (the ones that exist are found once, with any others
# one or two levels below / that anyone may write).
SHARED_CANDIDATES = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/crash", "/var/metrics")
SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")
READY = "ci-eval-ready"  # what the set-up writes on its status pipe once the command is about to start
# Runs as root inside bwrap once its set-up is done: says so on the status pipe (closed before
# the command, which cannot reach it), then drops to the sandbox's uid.
_START = 'printf %s "$2" >&"$1" && eval "exec $1>&-" && exec setpriv --reuid "$3" --regid "$3" ' \
    '--clear-groups --no-new-privs -- bash -c "$4"'


def available() -> bool:
    return (sys.platform == "linux" and os.geteuid() == 0
            and all(shutil.which(tool) for tool in ("bwrap", "setpriv")))


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
    """What lies below the sandbox's folder and its `shared/` to its uid; those two folders stay
    root's (0711), so that the names bwrap mounts from cannot be swapped by the agent."""
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if path != root / "shared":
                os.lchown(path, uid, uid)
    for held in (root, root / "shared"):
        if held.exists():
            os.chown(held, 0, 0)
            held.chmod(0o711)


def argv(command: str, root: Path, uid: int, network: bool, status_fd: int) -> list[str]:
    """The command line that runs `command` in bwrap as `uid`, in `root`; `status_fd` receives
    READY from the set-up once everything is mounted, before the command starts."""
    system: list[str] = []
    for path in SYSTEM:
        if os.path.islink(path):
            system += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            system += ["--ro-bind", path, path]
    shared = [arg for own, folder in private_copies(root) for arg in ("--bind", str(own), folder)]
    # The folders on the way to the mounts, passable by the uid (bwrap would make them 0700):
    # those to the sandbox and its copies first, those to the trees after the copies (a Python
    # under a private folder in /tmp lies inside the sandbox's own /tmp).
    places = [root, *(Path(f) for _, f in private_copies(root))]
    early, late = _ways(places), _ways(Path(t) for t in _interpreter())
    trees = [arg for tree in _interpreter() for arg in ("--ro-bind", tree, tree)]
    return ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            *([] if network else ["--unshare-net"]), *system, "--dev", "/dev", "--proc", "/proc", *early,
            "--bind", str(root), str(root),
            *shared,  # after /dev (/dev/shm), before the trees (a venv under /tmp stays visible)
            *late, *trees, "--chdir", str(root / "testbed"),
            "--", "bash", "-c", _START, "ci-eval", str(status_fd), READY, str(uid), command]


def _ways(paths: Iterable[Path]) -> list[str]:
    """bwrap's arguments that make the folders above `paths` (none of the read-only system's) 0755."""
    above = sorted({str(p) for path in paths for p in path.parents
                    if str(p) != "/" and not any(str(p) == s or str(p).startswith(s + "/") for s in SYSTEM)})
    return [arg for folder in above for arg in ("--perms", "0755", "--dir", folder)]


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

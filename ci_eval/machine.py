"""The machine a plan or a shard runs on: its cores and memory, read when it starts, and what they
allow. GitHub runs public repositories on 4 vCPU and 16 GB, private ones on 2 vCPU and 7 GB
(GitHub: "GitHub-hosted runners", standard runners); the model's speed and the workers that fit
differ between them."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_gb: float


REFERENCE = Machine(4, 16.0)  # ubuntu-latest for a public repository, where the step time was estimated
MODEL_GB = 4.2  # granite4:tiny-h in Ollama, when the model server runs on this machine
RESERVE_GB = 1.5  # the runner itself, Docker and ci-eval
MOST_WORKERS = 2  # the default's ceiling: a CPU model serves two slots at 1.4x one's step time
LONE_STEP_SECONDS = 50.0  # one slot of granite4:tiny-h on the reference machine (benchmarks/model_time.py)
SLOT_SLOWDOWN = 0.4  # each further slot on the same cores (benchmarks/model_slots.py: 1.4x for two)


def here(meminfo: Path = Path("/proc/meminfo")) -> Machine:
    """This machine's usable cores (its CPU affinity) and total memory."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        kib = int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo.read_text(), re.M).group(1))  # type: ignore[union-attr]
    except (OSError, AttributeError, ValueError):
        kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    return Machine(cores, kib / 1024**2)


@functools.cache
def _this_machine() -> Machine:
    return here()  # read once a process: the settings and the plan both ask


def named(spec: str | None) -> Machine:
    """The machine a `--machine CORESxGB` names (a private repository's runner is 2x7), else this one."""
    if not spec:
        return _this_machine()
    cores, memory = spec.lower().split("x")
    return Machine(int(cores), float(memory))


def model_here(base_url: str, predictions: str | None, local_model: bool) -> bool:
    """Whether the default model's memory is this machine's: an agent whose server is on loopback
    (Ollama, as the shard action starts it). The local model (Gemma 3 270M) is small."""
    host = urlparse(base_url).hostname or ""
    return predictions is None and not local_model and (host == "localhost" or host.startswith("127.") or host == "::1")


def gigabytes(size: str) -> float:
    """Docker's size units (512m, 4g) in GB."""
    number, unit = re.fullmatch(r"(\d+)([bkmg]?)", size.strip().lower()).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit] / 1024**3


def workers_for(machine: Machine, memory_limit_gb: float, model_gb: float) -> int:
    """Instances at once that this machine holds: a container's memory limit each beside the model
    and the runner, and two cores each (the tests and the agent's commands want a core, the model
    the rest); at least one, at most MOST_WORKERS. A 2 vCPU, 7 GB runner gets one."""
    by_memory = int((machine.memory_gb - RESERVE_GB - model_gb) // memory_limit_gb)
    return max(1, min(MOST_WORKERS, by_memory, machine.cores // 2))


def step_seconds(machine: Machine, slots: int) -> float:
    """The expected seconds of an agent step with `slots` model requests sharing this machine's
    cores: the reference machine's lone step, scaled by its cores over these and by the slots
    (70 s for two slots on 4 cores, 100 s for one on 2). An estimate from measured figures, until
    an earlier report's measured steps replace it."""
    return LONE_STEP_SECONDS * REFERENCE.cores / machine.cores * (1 + SLOT_SLOWDOWN * (slots - 1))

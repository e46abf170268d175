"""Running a runner subprocess while sampling the memory of its whole process tree.

Peak memory is the largest sum of RSS over the child and all its descendants (our
worker processes; PySpark's JVM and its Python workers), plus the files our engine keeps
in shared memory (``shared_memory_dir``: a RAM file system, memory that no process's RSS
shows), sampled every 100 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent


SHARED_MEMORY = Path("/dev/shm")  # the engine's default shared_memory_dir
SHARED_PREFIX = "aiostream-shared-"


def tree_rss_mb(root: psutil.Process) -> float:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return (total + shared_files_bytes({p.pid for p in processes})) / 2**20


def shared_files_bytes(pids: set[int]) -> int:
    """Bytes of the shared-memory files of the drivers among ``pids``."""
    total = 0
    try:
        directories = [d for d in SHARED_MEMORY.iterdir() if d.name.startswith(SHARED_PREFIX)]
    except OSError:
        return 0
    for directory in directories:
        owner = directory.name.removeprefix(SHARED_PREFIX).split("-", 1)[0]
        if owner.isdigit() and int(owner) in pids:
            total += _bytes_in(directory)
    return total


def _bytes_in(directory: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):  # the directory went away
        for file in directory.iterdir():
            with contextlib.suppress(OSError):  # the file went away while we looked
                total += file.stat().st_size
    return total


@dataclass
class ChildRun:
    result: dict[str, Any] | None
    samples: list[tuple[float, float]]  # (time.time(), MB)
    returncode: int
    log: str

    def peak_mb(self, start: float = 0.0, end: float = float("inf")) -> float | None:
        inside = [mb for t, mb in self.samples if start <= t <= end]
        return max(inside) if inside else None


def run_child(module: str, job: dict[str, Any], timeout: float, log_dir: Path) -> ChildRun:
    log_dir.mkdir(parents=True, exist_ok=True)
    name = f"{module.rsplit('.', 1)[-1]}-{job['workload']}-{job['master']}".replace("[", "").replace("]", "")
    log_path = log_dir / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp, open(log_path, "w") as log:
        out = Path(tmp) / "result.json"
        process = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps(job), str(out)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        root = psutil.Process(process.pid)
        samples: list[tuple[float, float]] = []
        deadline = time.time() + timeout
        while process.poll() is None and time.time() < deadline:
            samples.append((time.time(), tree_rss_mb(root)))
            time.sleep(0.1)
        if process.poll() is None:
            for child in root.children(recursive=True):
                child.kill()
            process.kill()
        returncode = process.wait()
        result = json.loads(out.read_text()) if out.exists() else None
    return ChildRun(result, samples, returncode, str(log_path))

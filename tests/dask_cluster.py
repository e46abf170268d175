"""Real Dask clusters for tests: a ``dask scheduler`` and ``dask worker`` processes on
loopback, started the way a user starts them on several machines, and stopped by PID.

The scheduler takes a free port itself (``--port 0``) and writes its address to a scheduler
file; readiness is read from the processes' own logs (the scheduler's file, each worker's
"Registered to" line), not guessed with a sleep. Workers get the test process's import path
(so functions of test modules, pickled by reference, import there) and one hash seed.

Parametrized suites run on the master ``dask-local[2]`` through one such cluster of two
workers per session (``master`` in conftest): a LocalCluster per test would cost seconds
each, and the backend's code is the same whichever way the cluster was started;
``tests/test_dask.py`` starts real ``dask-local[N]`` clusters from the master URL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT = 60.0
DASK_LOCAL_2 = "dask-local[2]"


class DaskCluster:
    def __init__(self, directory: Path, workers: int = 2, nanny: bool = False) -> None:
        self.directory = directory
        self.workers = workers
        self.nanny = nanny
        self.scheduler_file = directory / "scheduler.json"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return str(json.loads(self.scheduler_file.read_text())["address"])

    @property
    def master(self) -> str:
        return "dask://" + self.address.removeprefix("tcp://")

    def _env(self) -> dict[str, str]:
        path = os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path)
        return {
            **os.environ,
            "PYTHONPATH": path,
            "PYTHONHASHSEED": "0",
            "DASK_LOGGING__DISTRIBUTED": "info",
        }

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.directory / log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self._env(), cwd=self.directory,
            )

    def start(self) -> DaskCluster:
        """Start the scheduler and the workers; returns once every worker registered."""
        self.scheduler_file.unlink(missing_ok=True)
        self.scheduler = self._spawn(
            ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--dashboard-address", "127.0.0.1:0",  # not 8787
             "--scheduler-file", str(self.scheduler_file)],
            "scheduler.log",
        )
        self._await(lambda: self.scheduler_file.exists(), "the scheduler file", self.scheduler)
        for i in range(self.workers):
            self.start_worker(i)
        return self

    def start_worker(self, i: int) -> None:
        log = f"worker-{i}.log"
        process = self._spawn(
            ["distributed.cli.dask_worker", "--scheduler-file", str(self.scheduler_file),
             "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}",
             "--nanny" if self.nanny else "--no-nanny", "--death-timeout", "30"],
            log,
        )
        if i < len(self.worker_processes):
            self.worker_processes[i] = process
        else:
            self.worker_processes.append(process)
        path = self.directory / log
        self._await(lambda: b"Registered to" in path.read_bytes(), f"worker {i}", process)

    def _await(self, ready: object, what: str, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():  # type: ignore[operator]
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}; see {self.directory}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {START_TIMEOUT} s; see {self.directory}")
            time.sleep(0.05)  # a real process starting: nothing to drive with a clock

    def kill_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.send_signal(signal.SIGKILL)
            self.scheduler.wait()

    def stop(self) -> None:
        """Every process, by PID: SIGTERM, then SIGKILL if one lingers."""
        processes = [*self.worker_processes, *([self.scheduler] if self.scheduler else [])]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

"""Directories a driver owns for its run (executor/owned_dirs.py): a killed driver's are
removed by the next driver, a live driver's never, whatever its process id says here (a
/dev/shm shared between containers holds directories of other process namespaces)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiostream_engine.executor.owned_dirs import new_owned_dir

PREFIX = "aiostream-test-"

_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _driver_dir(parent: Path, pid: int, name: str) -> Path:
    """A directory as a driver leaves it: its lock file and some content."""
    directory = parent / f"{PREFIX}{pid}-{name}"
    directory.mkdir()
    (directory / ".owner").write_bytes(b"")
    (directory / "partition").write_bytes(b"x" * 100)
    return directory


def test_only_directories_whose_owner_is_gone_are_removed(tmp_path: Path) -> None:
    dead = _driver_dir(tmp_path, _exited_pid(), "dead")  # nobody holds its lock
    # A live driver of another process namespace: its pid means nothing here (it is the
    # pid of an exited process), but it holds its directory's lock.
    elsewhere = _driver_dir(tmp_path, _exited_pid(), "elsewhere")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(elsewhere / ".owner")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        mine = new_owned_dir(str(tmp_path), PREFIX)
        other = new_owned_dir(str(tmp_path), PREFIX)  # this driver's first one is kept
        names = sorted(os.listdir(tmp_path))
        assert names == sorted([elsewhere.name, Path(mine.path).name, Path(other.path).name])
        assert not dead.exists()
        assert Path(mine.path).name.startswith(f"{PREFIX}{os.getpid()}-")
    finally:
        holder.communicate("")  # its lock goes with it
    third = new_owned_dir(str(tmp_path), PREFIX)
    assert not elsewhere.exists()  # its owner is gone now
    for owned in (mine, other, third):
        owned.remove()
    assert os.listdir(tmp_path) == []

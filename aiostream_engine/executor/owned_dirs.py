"""Directories a driver creates for its run and removes at stop: spill copies of blocks,
shared-memory partitions.

A driver that is killed cannot remove its own, so the next driver to make one removes the
directories nobody owns any more. Ownership is a lock (``flock``) on a file inside the
directory, held by the driver for as long as it runs and released by the kernel when it
dies, not the process id in the name: a /dev/shm or /tmp shared between containers holds
directories of drivers in other process namespaces, whose ids mean nothing here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile

_LOCK_FILE = ".owner"


class OwnedDir:
    """A directory this process holds the lock of; ``remove`` deletes it and lets go."""

    def __init__(self, path: str, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock_fd)


def new_owned_dir(parent: str, prefix: str) -> OwnedDir:
    """A fresh directory ``<parent>/<prefix><pid>-XXXX``, locked by this process, after
    removing the directories with that prefix that no live process holds."""
    _remove_abandoned(parent, prefix)
    # Made under a name without the prefix, and renamed once locked: another driver's
    # clean-up never sees it unlocked.
    staging = tempfile.mkdtemp(prefix=f".{prefix}", dir=parent)
    fd = os.open(os.path.join(staging, _LOCK_FILE), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    path = os.path.join(parent, f"{prefix}{os.getpid()}-{os.path.basename(staging)[len(prefix) + 1 :]}")
    os.rename(staging, path)
    return OwnedDir(path, fd)


def _remove_abandoned(parent: str, prefix: str) -> None:
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if entry.name.startswith(prefix) and entry.is_dir() and _abandoned(entry.path):
                shutil.rmtree(entry.path, ignore_errors=True)


def _abandoned(path: str) -> bool:
    """Whether no process holds the directory's lock (taking it for a moment to see)."""
    try:
        fd = os.open(os.path.join(path, _LOCK_FILE), os.O_RDWR)
    except FileNotFoundError:  # being removed by its owner, or by another driver
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True

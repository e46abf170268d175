"""Directories a driver creates for its run and removes at stop: spill copies of blocks,
shared-memory partitions. A driver that is killed cannot remove its own, so each is named
after its process, and the next driver to make one removes those of processes that are gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


def new_owned_dir(parent: str, prefix: str) -> str:
    """A fresh directory ``<parent>/<prefix><pid>-XXXX``, after removing the directories
    with that prefix whose process is gone."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            owner = entry.name.removeprefix(prefix).split("-", 1)[0]
            if entry.name.startswith(prefix) and owner.isdigit() and not _alive(int(owner)):
                shutil.rmtree(entry.path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True

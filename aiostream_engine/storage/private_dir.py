"""Private directories and files for checkpoints and write-ahead logs.

What the engine creates is the user's alone: directories 0700, files 0600 (the logs hold
every received payload). A directory that already exists is used only if it is safe to:
owned by this user and not writable by group or others, else anyone sharing the machine
could plant files in it (or swap them). ``require_private=False`` (the
``checkpoint_dir_check`` setting) accepts such a directory, for a group-shared volume the
user trusts.
"""

from __future__ import annotations

import os
import stat

from ..errors import CheckpointSecurityError

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure_private_dir(path: str, *, require_private: bool = True) -> None:
    """Create ``path`` (mode 0700, missing parents too) or check the existing one; see the
    module docstring."""
    if not _make_dirs(os.path.abspath(path)) and require_private:
        check_private_dir(path)


def _make_dirs(path: str) -> bool:
    """Create ``path`` and its missing parents, each 0700; False if it existed."""
    try:
        os.mkdir(path, DIR_MODE)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:
        _make_dirs(os.path.dirname(path))
        try:
            os.mkdir(path, DIR_MODE)
            return True
        except FileExistsError:
            return False


def check_private_dir(path: str) -> None:
    """Refuse a directory (or a symbolic link to one) that another user controls."""
    me = os.geteuid()
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode) and link.st_uid != me:
        raise CheckpointSecurityError(
            f"checkpoint directory {path} is a symbolic link owned by uid {link.st_uid}, not "
            f"by this user (uid {me}); use a directory you own, or set "
            "checkpoint_dir_check=False if you trust it"
        )
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise CheckpointSecurityError(f"checkpoint directory {path} is not a directory")
    if info.st_uid != me:
        raise CheckpointSecurityError(
            f"checkpoint directory {path} is owned by uid {info.st_uid}, not by this user "
            f"(uid {me}): another user could have planted files in it. Use a directory you "
            "own, or set checkpoint_dir_check=False if you trust it"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise CheckpointSecurityError(
            f"checkpoint directory {path} is writable by group or others (mode {mode:04o}): "
            f"anyone who can write there can plant files. chmod 700 it, or set "
            "checkpoint_dir_check=False if you trust them"
        )


def open_private(path: str, flags: int) -> int:
    """``os.open`` creating files 0600 and never following a symbolic link."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)

"""The secret that authenticates checkpoint and write-ahead log files.

Every checkpoint file and every log record carries an HMAC-SHA256 of its bytes under this
key, checked before anything in it is unpickled: a file the engine did not write (planted
by another local user, or left by a program with another key) is refused, never loaded.

Where the key comes from, first match wins:

* ``checkpoint_key`` in the configuration (a string of at least 16 characters);
* ``checkpoint_key_file``: a file holding the key, created (random, 0600) if missing;
* otherwise ``$XDG_CONFIG_HOME/aiostream-engine/checkpoint.key`` (``~/.config/...``),
  created on first use.

A key file must be the user's own and unreadable by others, and it must live outside the
checkpoint directory: a key stored next to the files it protects protects nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tempfile

from ..errors import CheckpointSecurityError, ConfigurationError

#: Bytes of one MAC (HMAC-SHA256).
MAC_SIZE = 32
MIN_KEY_LENGTH = 16
KEY_FILE_NAME = "checkpoint.key"


class CheckpointKey:
    """An HMAC key. ``source`` says where it came from, for error messages."""

    __slots__ = ("_secret", "source")

    def __init__(self, secret: bytes, source: str) -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise ConfigurationError(
                f"the checkpoint key from {source} is {len(secret)} bytes; it needs at least "
                f"{MIN_KEY_LENGTH}"
            )
        self._secret = secret
        self.source = source

    def mac(self, label: bytes, *parts: bytes | memoryview) -> bytes:
        """The MAC of ``parts`` for one use (``label``), so a record of one kind of file can
        never pass for another kind."""
        digest = hmac.new(self._secret, label, hashlib.sha256)
        for part in parts:
            digest.update(part)
        return digest.digest()

    def verify(self, mac: bytes | memoryview, label: bytes, *parts: bytes | memoryview) -> bool:
        return hmac.compare_digest(bytes(mac), self.mac(label, *parts))

    def __repr__(self) -> str:  # never show the secret
        return f"CheckpointKey(from {self.source})"


def default_key_file() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "aiostream-engine", KEY_FILE_NAME)


def resolve_key(key: str | None, key_file: str | None, checkpoint_dir: str | None) -> CheckpointKey:
    """The key the configuration asks for (see the module's docstring). Blocking."""
    if key:
        return CheckpointKey(key.encode(), "the checkpoint_key setting")
    path = os.path.abspath(key_file or default_key_file())
    if checkpoint_dir is not None and _inside(path, checkpoint_dir):
        raise ConfigurationError(
            f"the checkpoint key file {path} is inside the checkpoint directory "
            f"{checkpoint_dir}: keep it elsewhere (checkpoint_key_file), or anyone who can "
            "plant a checkpoint file can also sign it"
        )
    return CheckpointKey(_read_or_create(path), path)


def _inside(path: str, directory: str) -> bool:
    real_dir = os.path.realpath(directory)
    real_path = os.path.realpath(path)
    return os.path.commonpath([real_dir, real_path]) == real_dir


def _read_or_create(path: str) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    # Written whole under a temporary name and linked into place: two processes creating
    # the key at once both end up reading the one that won.
    fd, temporary = tempfile.mkstemp(prefix=".checkpoint-key-", dir=parent)
    try:
        os.write(fd, secrets.token_hex(32).encode() + b"\n")
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
    return _read(path)


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise CheckpointSecurityError(
                f"the checkpoint key file {path} belongs to uid {info.st_uid}, not to this "
                f"user (uid {os.geteuid()}): refusing a key someone else controls"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise CheckpointSecurityError(
                f"the checkpoint key file {path} is accessible by group or others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}): chmod 600 it, or anyone who can read it "
                "can sign checkpoint files"
            )
        secret = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    return secret

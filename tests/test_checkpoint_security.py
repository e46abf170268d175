"""Planted checkpoints: another local user (uid 65534, written by a real process of that
user) must not get code run through ``get_or_create``; what the engine writes is private.

The issue's finding: a checkpoint directory under the shared temporary directory, planted
before the job's first run, ran a command as the job's user when it was unpickled.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiostream_engine import ConfigurationError, ManualClock, StreamingContext
from aiostream_engine.checkpoint import encode
from aiostream_engine.errors import CheckpointDamagedError, CheckpointSecurityError, DataLossError
from aiostream_engine.receiver.wal import LABEL, MAGIC
from aiostream_engine.storage.framing import frame
from aiostream_engine.storage.keys import CheckpointKey, resolve_key
from aiostream_engine.testing import advance_batches
from tests.wal_receiver import ReliableReceiver, feed, wal_conf

NOBODY = 65534
ATTACKER_KEY = CheckpointKey(b"attacker-key-0123456789", "the attacker's key")


class Shared:
    """A world-writable, sticky directory like /tmp, and a marker the planted code touches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marker = path / "pwned"

    def as_nobody(self, *command: str, data: bytes = b"") -> None:
        subprocess.run(list(command), input=data, user=NOBODY, group=NOBODY, check=True)

    def plant(self, path: Path, blob: bytes) -> None:
        """Write ``blob`` to ``path`` as uid 65534."""
        script = f"import sys; open({str(path)!r}, 'wb').write(sys.stdin.buffer.read())"
        self.as_nobody("python3", "-c", script, data=blob)

    def evil_metadata(self, name: str) -> bytes:
        """A well-formed checkpoint file whose unpickling runs ``touch <marker>``; signed with
        a key the attacker has, not the job's."""
        return encode({"batch_ms": Evil(str(self.marker))}, ATTACKER_KEY, name)  # type: ignore[dict-item]


class Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def shared() -> Iterator[Shared]:
    path = Path(tempfile.mkdtemp(prefix="aiostream-shared-"))  # under /tmp, reachable by all
    path.chmod(0o1777)
    try:
        yield Shared(path)
    finally:
        shutil.rmtree(path)


def setup_for(directory: Path, **conf: Any):  # type: ignore[no-untyped-def]
    def setup() -> StreamingContext:
        ssc = StreamingContext(1.0, master="local", clock=ManualClock(0.0), conf=conf)
        ssc.queue_stream([[1]]).foreach_rdd(lambda rdd: None)
        ssc.checkpoint(str(directory))
        return ssc

    return setup


def test_a_directory_planted_by_another_user_is_refused_before_anything_is_read(shared: Shared) -> None:
    directory = shared.path / "readme-ingest-checkpoint"
    shared.as_nobody("mkdir", "-m", "0755", str(directory))
    shared.plant(directory / "metadata-9.ckpt", shared.evil_metadata("metadata-9.ckpt"))
    with pytest.raises(CheckpointSecurityError, match=f"owned by uid {NOBODY}, not by this user"):
        StreamingContext.get_or_create(str(directory), setup_for(directory))
    assert not shared.marker.exists()


def test_a_file_planted_in_a_shared_directory_is_refused_unread(shared: Shared) -> None:
    """The user opted out of the directory check (a group-shared volume): the planted file
    still fails its MAC, so it is never unpickled; with no usable metadata, nothing runs."""
    directory = shared.path / "team-checkpoint"
    directory.mkdir()
    directory.chmod(0o777)
    shared.plant(directory / "metadata-9.ckpt", shared.evil_metadata("metadata-9.ckpt"))
    assert os.stat(directory / "metadata-9.ckpt").st_uid == NOBODY
    with pytest.raises(CheckpointSecurityError, match="writable by group or others"):
        StreamingContext.get_or_create(str(directory), setup_for(directory))
    with pytest.raises(CheckpointDamagedError, match="not written with this engine's key"):
        StreamingContext.get_or_create(
            str(directory), setup_for(directory, checkpoint_dir_check=False)
        )
    assert not shared.marker.exists()


@pytest.mark.anyio
async def test_a_planted_log_segment_is_refused_unread(shared: Shared) -> None:
    directory = shared.path / "team-checkpoint"
    (directory / "receivedData" / "0").mkdir(parents=True)
    for d in (directory, directory / "receivedData", directory / "receivedData" / "0"):
        d.chmod(0o777)
    import pickle

    record = b"".join(frame(ATTACKER_KEY, LABEL, 0, 0, 0, pickle.dumps([Evil(str(shared.marker))])))
    shared.plant(directory / "receivedData" / "0" / "segment-0000000000.wal", MAGIC + record)
    conf = wal_conf(checkpoint_dir_check=False)
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0), conf=conf) as ssc:
        ssc.checkpoint(str(directory))
        ssc.receiver_stream(ReliableReceiver()).foreach_rdd(lambda rdd: None)
        with pytest.raises(DataLossError, match=r"block 0 \(segment-0000000000.wal bytes 8-\d+\)"):
            await ssc.start()
    assert not shared.marker.exists()


def test_a_symbolic_link_planted_by_another_user_is_refused(shared: Shared, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    link = shared.path / "checkpoint"
    shared.as_nobody("ln", "-s", str(mine), str(link))
    with pytest.raises(CheckpointSecurityError, match="symbolic link owned by uid 65534"):
        StreamingContext.get_or_create(str(link), setup_for(link))


@pytest.mark.anyio
async def test_everything_the_engine_writes_is_private(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoint"
    receiver = ReliableReceiver()
    conf = wal_conf(checkpoint_interval=1.0)
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0), conf=conf) as ssc:
        ssc.checkpoint(str(directory))
        ssc.receiver_stream(receiver).foreach_rdd(lambda rdd: None)
        await ssc.start()
        await feed(receiver, ["secret payload"])
        await advance_batches(ssc, 1)
        modes = {
            str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode)
            for path in [directory, *directory.rglob("*")]
        }
    assert modes["checkpoint"] == 0o700
    assert modes["checkpoint/receivedData"] == modes["checkpoint/receivedData/0"] == 0o700
    files = {name: mode for name, mode in modes.items() if Path(tmp_path / name).is_file()}
    assert any(n.endswith(".wal") for n in files) and any("state-" in n for n in files)
    assert set(files.values()) == {0o600}


def test_an_existing_directory_of_the_user_is_accepted_as_it_is(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoint"
    directory.mkdir(mode=0o755)  # readable, not writable, by others: the user's choice
    ssc = StreamingContext.get_or_create(str(directory), setup_for(directory))
    assert ssc.checkpoint_dir == str(directory)


def test_the_key_file_must_be_private_and_outside_the_checkpoint_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    key = resolve_key(None, None, str(tmp_path / "checkpoint"))
    path = tmp_path / "config" / "aiostream-engine" / "checkpoint.key"
    assert key.source == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert resolve_key(None, None, None).mac(b"x", b"y") == key.mac(b"x", b"y")  # the same key
    path.chmod(0o644)
    with pytest.raises(CheckpointSecurityError, match="accessible by group or others"):
        resolve_key(None, None, None)
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o600)
    with pytest.raises(CheckpointSecurityError, match=f"belongs to uid {NOBODY}"):
        resolve_key(None, None, None)
    with pytest.raises(ConfigurationError, match="is inside the checkpoint directory"):
        resolve_key(None, str(tmp_path / "checkpoint" / "key"), str(tmp_path / "checkpoint"))
    with pytest.raises(ConfigurationError, match="needs at least 16"):
        resolve_key("short", None, None)
    given = resolve_key("a secret of the deployment", None, None)
    assert given.source == "the checkpoint_key setting"

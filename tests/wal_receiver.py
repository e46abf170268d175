"""A receiver for write-ahead log tests: each list fed to it is stored as one durable block,
then "acknowledged"; ``feed`` returns once that happened."""

from __future__ import annotations

from typing import Any

import anyio

from aiostream_engine import Receiver


class ReliableReceiver(Receiver):
    """Stores each list it is fed as one durable block, then 'acknowledges' it."""

    def __init__(self) -> None:
        super().__init__()
        self.send, self.receive = anyio.create_memory_object_stream[list[Any]](100)
        self.acked: list[list[Any]] = []

    async def on_start(self) -> None:
        async for records in self.receive:
            await self.store_block(records)
            self.acked.append(records)


def wal_conf(**extra: Any) -> dict[str, Any]:
    return {"receiver_wal_enable": True, "receiver_wal_roll_interval": 1.0, **extra}


async def feed(receiver: ReliableReceiver, records: list[Any]) -> None:
    count = len(receiver.acked)
    await receiver.send.send(records)
    with anyio.fail_after(10):  # the block is written by a worker thread
        while len(receiver.acked) == count:
            await anyio.lowlevel.checkpoint()

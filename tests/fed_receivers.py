"""Feeding a test receiver that stores what it is sent, one block per item."""

from __future__ import annotations

from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream


class FedReceiver(Protocol):
    """A receiver storing each item sent on ``send`` as a block, counting them."""

    send: MemoryObjectSendStream[Any]
    blocks_stored: int


async def feed(receiver: FedReceiver, *blocks: Any) -> None:
    """Send ``blocks`` and wait until the receiver has stored them all."""
    target = receiver.blocks_stored + len(blocks)
    for block in blocks:
        await receiver.send.send(block)
    with anyio.fail_after(10):
        while receiver.blocks_stored < target:
            await anyio.lowlevel.checkpoint()

"""What a block stream gets back from its write-ahead log after a crash, and what it lost.

The checkpoint metadata says which blocks each batch to be run again had (by block id and
place in the log) and the stream's position (every block id below it was allocated to a
batch). The log says which blocks verify and where it is damaged. From the two:

* each batch gets exactly its blocks back;
* blocks at or past the position that no batch took go to the next batch;
* a block a batch needs that is missing, or a damaged stretch that may have held a block
  not yet in any batch, is a loss, named precisely (block ids, the batch, the bytes).

Damage that held only blocks of batches no longer needed (covered by the state checkpoint
recovery starts from) loses nothing, and the unfinished last append of a crash (``torn``)
held no block anything used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .wal import WalContents, WalDamage, WalEntry, WalRef


@dataclass
class BlockRecovery:
    #: Batch time -> the blocks it had, in its order.
    restored: dict[int, list[WalEntry]] = field(default_factory=dict)
    #: Blocks no batch took yet: they go to the next batch.
    unallocated: list[WalEntry] = field(default_factory=list)
    #: Where the blocks still needed are (the other segments can go).
    needed: list[WalRef] = field(default_factory=list)
    #: The id the next new block takes.
    next_block_id: int = 0
    #: Every loss, one line each.
    lost: list[str] = field(default_factory=list)


def plan_block_recovery(
    contents: WalContents, position: int, replays: dict[int, Any]
) -> BlockRecovery:
    """Match the log's blocks to the batches being run again (``replays``: batch time ->
    list of ``(block id, segment, offset)``) and to the stream's ``position``."""
    by_id = {e.block_id: e for e in contents.entries}
    result = BlockRecovery()
    claimed: set[int] = set()
    for time_ms, descriptor in sorted(replays.items()):
        blocks = []
        for block_id, segment, offset in descriptor or []:
            entry = by_id.get(block_id)
            if entry is None or entry.ref != (segment, offset):
                result.lost.append(
                    f"block {block_id} of batch {time_ms / 1000:g} s ({segment} @ {offset})"
                )
                continue
            blocks.append(entry)
            claimed.add(block_id)
        result.restored[time_ms] = blocks
    result.unallocated = [
        e for e in contents.entries if e.block_id >= position and e.block_id not in claimed
    ]
    result.needed = [e.ref for e in contents.entries if e.block_id in claimed or e.block_id >= position]
    for damage in contents.damage:
        if not damage.torn and _may_hold_unallocated(damage, position):
            result.lost.append(f"{damage.describe()}, received after the last batch was cut")
    known = [e.block_id + 1 for e in contents.entries]
    known += [d.block_id + 1 for d in contents.damage if d.block_id is not None]
    result.next_block_id = max([position, *known])
    return result


def _may_hold_unallocated(damage: WalDamage, position: int) -> bool:
    """Whether the damaged stretch may have held a block at or past ``position``."""
    last = damage.last_block_id
    return last is None or last >= position

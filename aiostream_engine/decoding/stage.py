"""The decode stage: undecoded input becomes records inside the task, on the worker.

A source whose partitions arrive undecoded (raw payload blocks, Kafka records a task
fetched) puts ``decode_stage`` first in each of its tasks. The stage hands the partition's
raw items to a ``Decoder``; an item the decoder cannot decode becomes a dead-letter record
instead of failing the task. When the stage has decoded the whole partition it reports
the partition's ``DecodeOutcome`` (records decoded, dead letters in order) to the driver
as a side output (``rdd.side_output``), where ``WorkerDecoding`` collects it. A task that
stops early (``take``) reports nothing for that partition.

What the stage passes on (``Emit``): the records (the stream's own tasks), the dead letters
(the tasks of ``dead_letters()`` for a partition no other task decoded), or nothing (a
pass that only learns the outcome, to count a batch exactly).
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import chain, islice
from typing import Any, Protocol

from ..errors import OperatorError
from ..rdd.side_output import SideOutput, emit_side
from ..rdd.tasks import Stage


class Decoder(Protocol):
    """Decodes the raw items of one partition, on the worker. A raw block's ``data`` is
    ``bytes``, or on ``local[N]`` (blocks of 1 MiB and more) the block's file mapped
    read-only: index it, slice it (to ``bytes``), ``find``/``rfind`` in it or take a
    ``memoryview`` of it (``aiostream_engine.raw.shared``)."""

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        """The records of ``raw`` in order, as lists (chunks: the task iterates them without
        a Python step per record); an item that does not decode is appended to ``dead`` as
        its dead-letter record, in order. Raising (not a bad item: a broken decoder or
        block) fails the task."""
        ...


@dataclass(frozen=True)
class ItemDecoder:
    """Decodes item by item: ``function(item)`` is the record; an item it raises on becomes
    ``dead_letter(item, error)``. Plain functions (or picklable callables): they travel
    to the workers with the task."""

    function: Callable[[Any], Any]
    dead_letter: Callable[[Any, Exception], Any]
    chunk: int = 4096

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        function, letter = self.function, self.dead_letter
        while items := list(islice(raw, self.chunk)):
            records: list[Any] = []
            keep = records.append
            for item in items:
                try:
                    keep(function(item))
                except Exception as exc:  # any decode failure is a dead letter, never fatal
                    dead.append(letter(item, exc))
            yield records


class Emit(enum.Enum):
    """What a decode stage passes on to the rest of its task."""

    RECORDS = "records"
    DEAD_LETTERS = "dead letters"
    NOTHING = "nothing"


@dataclass(frozen=True)
class DecodeOutcome:
    """One partition decoded: how many records it gave, and its dead letters in order."""

    records: int
    dead_letters: list[Any]


def decode_stage(
    decoder: Decoder, channel: int, time_ms: int, emit: Emit, operator: str = "decode"
) -> Stage:
    """The stage decoding partition ``index`` of the batch at ``time_ms``; its outcome goes
    to side channel ``channel`` under the key ``(time_ms, index)``."""
    function = partial(_decode, decoder, channel, time_ms, emit, operator)
    return Stage(operator, function, checked=True)


def _decode(
    decoder: Decoder, channel: int, time_ms: int, emit: Emit, operator: str,
    index: int, raw: Iterator[Any],
) -> Iterable[Any]:
    dead: list[Any] = []
    key = (time_ms, index)
    chunks = _reporting(decoder.decode(raw, dead), dead, SideOutput(channel, key, None), operator)
    if emit is Emit.RECORDS:
        return chain.from_iterable(chunks)
    for _ in chunks:
        pass
    return dead if emit is Emit.DEAD_LETTERS else []


def _reporting(
    chunks: Iterator[list[Any]], dead: list[Any], target: SideOutput, operator: str
) -> Iterator[list[Any]]:
    """The decoder's chunks; once they are all out, the partition's outcome is reported.
    A decoder that raises fails the task with an ``OperatorError`` naming the stage."""
    records = 0
    try:
        for chunk in chunks:
            records += len(chunk)
            yield chunk
    except OperatorError:
        raise
    except Exception as exc:  # a broken decoder or block, not a bad item
        trace = "".join(traceback.format_exception(exc))
        raise OperatorError(operator, type(exc).__name__, str(exc), trace) from None
    emit_side(SideOutput(target.channel, target.key, DecodeOutcome(records, dead)))

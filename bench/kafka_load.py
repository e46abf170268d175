"""A Kafka load generator that takes little of the CPU it shares with what it measures.

The latency runs of ``bench.kafka_ingest`` offer W2 readings at a fixed rate to a broker
on the same two cores as the engine. A client producer spends CPU per record: Python's
confluent-kafka loop formatting and producing each reading took about one core at 300,000
readings/s here, and ``produce_batch`` with readings built beforehand still 0.47 of a core
(measured by this bench's first version), so the engine measured had half the machine at
best. This generator does per record nothing: the readings (``bench.workloads.iot_lines``)
are encoded once into Kafka record batches (aiokafka's C batch builder, every record with
timestamp delta 0), and each send writes the send time into every reading's ``ts`` (a
fixed-width placeholder, replaced in one pass over the batch) and the batch's two
timestamps, recomputes its CRC-32C and writes it in a Produce request (acks=1) through
aiokafka's client. A consumer reads a reading's send time from its ``ts`` (or its record's
timestamp, CreateTime in ms).

The rate is kept by the clock: every ``TICK`` seconds the readings due by then go out as
whole batches of ``BATCH`` readings, one partition after the other; a batch's timestamp
is the time its first reading fell due, so a later reading of the batch is measured as
older than it is (by at most the batch's span, BATCH / rate: 5 ms at 400,000/s), never
younger.

    python -m bench.kafka_load BOOTSTRAP TOPIC PARTITIONS RATE SECONDS

prints ``{"sent": N, "seconds": S, "cpu_s": C}`` when done.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import struct
import sys
import time

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record._crecords import DefaultRecordBatchBuilder, crc32c_cython
from aiokafka.structs import TopicPartition

from bench.workloads import reading

#: Readings per partition in one record batch.
BATCH = 2000
#: Distinct batches built per partition (the readings rotate through them).
TEMPLATES = 16
TICK = 0.005
SEED = 20240605
#: A reading's ``ts`` before it is sent: a float of the width of every send time (seconds
#: since the epoch, three decimals) until the year 2286.
PLACEHOLDER = 1111111111.111
PLACEHOLDER_BYTES = b"1111111111.111"
# Kafka record batch v2: the CRC-32C (at 17) covers everything from the attributes (at 21)
# on, the first and the max timestamp among it (at 27 and 35).
CRC_AT, ATTRIBUTES_AT, TIMESTAMPS_AT = 17, 21, 27
TIMESTAMPS = struct.Struct(">qq")
CRC = struct.Struct(">I")


def record_batches(partitions: int) -> list[list[bytes]]:
    """``TEMPLATES`` batches of ``BATCH`` W2 readings for each partition, every ``ts`` the
    placeholder."""
    rng = random.Random(SEED)
    out: list[list[bytes]] = []
    for _ in range(partitions):
        mine = []
        for _ in range(TEMPLATES):
            builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 30)
            for offset in range(BATCH):
                line = json.dumps({**reading(rng, offset, 0.0), "ts": PLACEHOLDER})
                builder.append(offset, timestamp=0, key=None, value=line.encode(), headers=[])
            batch = bytes(builder.build())
            assert batch.count(PLACEHOLDER_BYTES) == BATCH
            mine.append(batch)
        out.append(mine)
    return out


def stamped(template: bytes, seconds: float) -> bytearray:
    """The batch with every reading's ``ts`` and record timestamp ``seconds`` (and its CRC
    to match): a few copies of the batch in C, nothing per reading in Python."""
    batch = bytearray(template.replace(PLACEHOLDER_BYTES, f"{seconds:014.3f}".encode()))
    millis = int(seconds * 1000)
    TIMESTAMPS.pack_into(batch, TIMESTAMPS_AT, millis, millis)
    CRC.pack_into(batch, CRC_AT, crc32c_cython(bytes(memoryview(batch)[ATTRIBUTES_AT:])))
    return batch


async def offer(bootstrap: str, topic: str, partitions: int, rate: float, seconds: float) -> int:
    """Send ``rate`` readings/s for ``seconds``; the number sent."""
    batches = record_batches(partitions)
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.add_topic(topic)
        leaders = [client.cluster.leader_for_partition(TopicPartition(topic, p))
                   for p in range(partitions)]
        in_flight: set[asyncio.Task[object]] = set()
        failures: list[str] = []

        def done(task: asyncio.Task[object]) -> None:
            in_flight.discard(task)
            failures.extend(_errors(task))
        sent, turn, start = 0, 0, time.time()
        while (now := time.time()) < start + seconds:
            due = int((now - start) * rate)
            while due - sent >= BATCH:
                partition = turn % partitions
                due_at = start + sent / rate
                data = stamped(batches[partition][(turn // partitions) % TEMPLATES], due_at)
                request = ProduceRequest(None, 1, 30_000, [(topic, [(partition, data)])])
                task = asyncio.ensure_future(client.send(leaders[partition], request))
                in_flight.add(task)
                task.add_done_callback(done)
                sent += BATCH
                turn += 1
            await asyncio.sleep(TICK)
        await asyncio.gather(*in_flight, return_exceptions=True)
        if failures:
            raise RuntimeError(f"{len(failures)} produce requests failed, the first: {failures[0]}")
        return sent
    finally:
        await client.close()


def _errors(task: asyncio.Task[object]) -> list[str]:
    """What went wrong with one Produce request: nothing, its exception, or the error codes
    of its partitions."""
    if task.cancelled():
        return ["cancelled"]
    if (exc := task.exception()) is not None:
        return [repr(exc)]
    return [f"partition {p[0]}: error code {p[1]}"
            for _topic, partitions in task.result().topics  # type: ignore[attr-defined]
            for p in partitions if p[1]]


def main() -> None:
    bootstrap, topic, partitions, rate, seconds = sys.argv[1:6]
    started = time.time()
    sent = asyncio.run(offer(bootstrap, topic, int(partitions), float(rate), float(seconds)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"sent": sent, "seconds": time.time() - started,
                      "cpu_s": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    main()

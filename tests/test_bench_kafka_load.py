"""bench.kafka_load stamps its prebuilt record batches into valid Kafka record batches."""

from __future__ import annotations

import orjson
from aiokafka.record.memory_records import MemoryRecords

from bench.kafka_load import BATCH, record_batches, stamped


def test_a_stamped_batch_is_valid_and_every_reading_carries_the_send_time() -> None:
    template = record_batches(1)[0][3]
    data = stamped(template, 1796000000.125)
    records = MemoryRecords(bytes(data))
    batch = records.next_batch()
    assert batch is not None and batch.validate_crc()
    readings = [(r.timestamp, orjson.loads(r.value)) for r in batch]
    assert len(readings) == BATCH
    assert {ts for ts, _ in readings} == {1796000000125}
    assert {r["ts"] for _, r in readings} == {1796000000.125}
    assert len({r["device_id"] for _, r in readings}) > 1
    again = MemoryRecords(bytes(stamped(template, 1796000001.5))).next_batch()
    assert {orjson.loads(r.value)["ts"] for r in again} == {1796000001.5}  # the template is unchanged

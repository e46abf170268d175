"""Where each batch of the direct Kafka stream ends: Spark's per-partition rate limits.

At batch time t every partition's range starts where the previous batch's ended and ends
at the partition's latest offset, capped (Spark's ``DirectKafkaInputDStream``,
``maxMessagesPerPartition``):

* without backpressure, at ``max_rate_per_partition`` records per second (0: no cap);
* with a backpressure rate R (records/s for the whole stream), each partition gets
  R * lag_p / total_lag, capped by ``max_rate_per_partition``;
* records per partition per batch = max(batch seconds * that rate, min_rate_per_partition),
  truncated to an integer. No positive rate anywhere: no cap at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiostream_engine.sources.kafka_types import OffsetRange, TopicAndPartition


def max_records_per_partition(
    current: Mapping[TopicAndPartition, int],
    latest: Mapping[TopicAndPartition, int],
    batch_seconds: float,
    max_rate_per_partition: float,
    min_rate_per_partition: float,
    rate: float | None,
) -> dict[TopicAndPartition, int] | None:
    """Records each partition may read this batch; None: no limit."""
    limits: dict[TopicAndPartition, float]
    if rate is not None and rate > 0:
        lag = {p: max(latest.get(p, offset) - offset, 0) for p, offset in current.items()}
        total = sum(lag.values())
        if total == 0:
            return None  # nothing to read anywhere: a limit changes nothing
        limits = {}
        for p, behind in lag.items():
            share = behind / total * rate
            limits[p] = min(share, max_rate_per_partition) if max_rate_per_partition > 0 else share
    else:
        limits = {p: float(max_rate_per_partition) for p in current}
    if sum(limits.values()) <= 0:
        return None
    return {
        p: int(max(batch_seconds * limit, min_rate_per_partition)) for p, limit in limits.items()
    }


def cut_ranges(
    current: Mapping[TopicAndPartition, int],
    latest: Mapping[TopicAndPartition, int],
    limits: Mapping[TopicAndPartition, int] | None,
) -> list[OffsetRange]:
    """One range per partition of ``current``, in partition order: from the current offset
    to the latest, at most ``limits[p]`` records. A partition whose latest offset is behind
    the current one (the topic was recreated) gets an empty range."""
    ranges = []
    for p in sorted(current):
        start = current[p]
        end = latest.get(p, start)
        if limits is not None:
            end = min(end, start + limits[p])
        ranges.append(OffsetRange(p.topic, p.partition, start, max(end, start)))
    return ranges

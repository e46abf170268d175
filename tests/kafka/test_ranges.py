"""Spark's per-partition limits of the direct Kafka stream (DESIGN.md section 4)."""

from __future__ import annotations

from aiostream_engine.sources.kafka_ranges import cut_ranges, max_records_per_partition
from aiostream_engine.sources.kafka_types import OffsetRange, TopicAndPartition

A, B, C = (TopicAndPartition("t", i) for i in range(3))


def test_no_rate_and_no_max_rate_means_no_limit() -> None:
    assert max_records_per_partition({A: 0}, {A: 10**9}, 2.0, 0, 1, None) is None
    assert cut_ranges({A: 5}, {A: 10**9}, None) == [OffsetRange("t", 0, 5, 10**9)]


def test_max_rate_times_batch_seconds_with_the_min_rate_as_floor() -> None:
    limits = max_records_per_partition({A: 0, B: 0}, {A: 100, B: 100}, 0.5, 7, 1, None)
    assert limits == {A: 3, B: 3}  # 3.5 truncated, as Spark's toLong
    assert max_records_per_partition({A: 0}, {A: 100}, 0.1, 5, 2, None) == {A: 2}


def test_backpressure_rate_is_split_by_lag_and_capped_by_max_rate() -> None:
    current = {A: 0, B: 100, C: 50}
    latest = {A: 600, B: 400, C: 50}  # lags 600, 300, 0
    # rate 90/s over 2 s: A gets 60/s -> 120, B 30/s -> 60, C 0/s -> min rate 1
    assert max_records_per_partition(current, latest, 2.0, 0, 1, 90.0) == {A: 120, B: 60, C: 1}
    # max rate 40/s caps A's share
    assert max_records_per_partition(current, latest, 2.0, 40, 1, 90.0) == {A: 80, B: 60, C: 1}
    ranges = cut_ranges(current, latest, {A: 80, B: 60, C: 1})
    assert ranges == [OffsetRange("t", 0, 0, 80), OffsetRange("t", 1, 100, 160), OffsetRange("t", 2, 50, 50)]


def test_no_lag_anywhere_needs_no_limit() -> None:
    assert max_records_per_partition({A: 3}, {A: 3}, 1.0, 10, 1, 500.0) is None


def test_a_partition_whose_end_moved_back_gets_an_empty_range() -> None:
    assert cut_ranges({A: 10}, {A: 4}, None) == [OffsetRange("t", 0, 10, 10)]

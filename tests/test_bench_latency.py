"""W4's accounting: every event sent in the window is counted once, late ones included."""

from __future__ import annotations

import pytest

from bench.latency import SENT_KEY, OutputLog, cyclic_slice, parse_stamped, window_latencies
from bench.suite import Settings, _latency_runs, meets_latency_target
from bench.workloads import iot_lines, parse_reading


def test_cyclic_slice_wraps_around_more_than_once() -> None:
    assert cyclic_slice(["a", "b", "c"], 2, 7) == ["c", "a", "b", "c", "a", "b", "c"]


def test_parse_stamped_counts_each_chunk_under_its_stamp() -> None:
    lines = iot_lines(5)
    out = list(parse_stamped([1.0, *lines[:3], 2.0, *lines[3:]]))
    assert out[:-1] == [parse_reading(line) for line in lines]
    assert out[-1] == (SENT_KEY, (((1.0, 3), (2.0, 2)), 0))


def test_parse_stamped_refuses_lines_without_a_stamp() -> None:
    with pytest.raises(ValueError):
        list(parse_stamped(iot_lines(1)))


def test_window_counts_sent_events_and_late_ones_as_lower_bounds() -> None:
    log = OutputLog()
    log.add(10.3, [(9.0, 5), (10.0, 4)])  # 9.0 is before the window: not measured
    log.add(10.6, [(10.0, 2)])  # the rest of stamp 10.0, one batch later
    sent = {9.0: 5, 10.0: 6, 10.5: 3}  # 10.5 never comes out
    latencies, missing = window_latencies(log, sent, 10.0, 11.0, now=12.0)
    assert [(round(v, 6), n) for v, n in sorted(latencies)] == [(0.3, 4), (0.6, 2), (1.5, 3)]
    assert missing == 3
    assert log.output_between(10.0, 11.0) == 11


def test_target_is_judged_on_output_rate_and_p99() -> None:
    run = {"available": True, "output_rate": 219_000.0, "latency_s": {"p99": 0.25}}
    assert meets_latency_target(run, 200_000, 0.3)
    assert not meets_latency_target({**run, "output_rate": 199_979.0}, 200_000, 0.3)
    assert not meets_latency_target({**run, "latency_s": {"p99": 0.31}}, 200_000, 0.3)


def test_target_run_offers_more_than_the_target() -> None:
    runs = _latency_runs(Settings.of(quick=False), half_rate=1_140_000)
    assert runs == [(1.0, 1_140_000), (0.1, 1_140_000), (0.1, pytest.approx(220_000))]
    quick = _latency_runs(Settings.of(quick=True), half_rate=1_140_000)  # 0.1 s batches only
    assert quick == [(0.1, 1_140_000), (0.1, pytest.approx(220_000))]

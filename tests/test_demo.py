"""The IoT demo: its pipeline against a plain-Python reference, and the command line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.cli import main
from aiostream_engine.demo import (
    MALFORMED,
    aggregate_readings,
    attach_demo,
    format_results,
    parse_reading,
    window_span,
    windowed_averages,
)
from aiostream_engine.testing import advance_batches, collect_batches


def reference(lines: list[str]) -> dict[str, tuple[int, float, float]]:
    """The demo's aggregate computed by hand, with the json module."""
    out: dict[str, tuple[int, float, float]] = {}
    for line in lines:
        try:
            reading = json.loads(line)
            key, temp, humidity = reading["device_id"], reading["temp"], reading["humidity"]
        except ValueError:
            key, temp, humidity = MALFORMED, 0.0, 0.0
        count, temps, humidities = out.get(key, (0, 0.0, 0.0))
        out[key] = (count + 1, temps + temp, humidities + humidity)
    return out


def test_parse_reading() -> None:
    line = '{"device_id":"dev-0001","ts":1.0,"temp":21.5,"humidity":40.0,"kind":"sensor"}'
    assert parse_reading(line) == ("dev-0001", (1, 21.5, 40.0))
    assert parse_reading(line[:-3]) == (MALFORMED, (1, 0.0, 0.0))
    assert parse_reading('{"temp": 1}') == (MALFORMED, (1, 0.0, 0.0))
    assert parse_reading("[1, 2]") == (MALFORMED, (1, 0.0, 0.0))
    assert parse_reading(b"\xff") == (MALFORMED, (1, 0.0, 0.0))


@pytest.mark.anyio
@pytest.mark.parametrize("master", ["local", "local[2]"])
async def test_pipeline_matches_a_plain_python_reference(master: str) -> None:
    async with StreamingContext(1.0, master=master, clock=ManualClock()) as ssc:
        readings = ssc.simulator_stream(
            num_devices=15, rate=600, seed=5, malformed_fraction=0.05
        )
        raw = collect_batches(readings)
        aggregated = collect_batches(aggregate_readings(readings, num_partitions=3))
        await ssc.start()
        await anyio.wait_all_tasks_blocked()
        await advance_batches(ssc, 4)
        await ssc.stop()
    assert not ssc.errors
    assert [t for t, _ in aggregated] == [t for t, _ in raw] == [1.0, 2.0, 3.0, 4.0]
    for (_, lines), (_, records) in zip(raw, aggregated, strict=True):
        assert len(lines) == 600
        got = dict(records)
        assert len(got) == len(records)  # one record per key
        expected = reference(lines)
        assert got.keys() == expected.keys()
        assert MALFORMED in got
        for key, (count, temps, humidities) in expected.items():
            assert got[key][0] == count
            assert got[key][1] == pytest.approx(temps, rel=1e-12)
            assert got[key][2] == pytest.approx(humidities, rel=1e-12)


@pytest.mark.anyio
async def test_window_view_matches_a_plain_python_reference(tmp_path: Path) -> None:
    """Per-device sums over the last 3 batches, every batch, equal a recount of the raw
    readings of those batches (the engine adds what enters and subtracts what leaves)."""
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        ssc.checkpoint(str(tmp_path))
        readings = ssc.simulator_stream(num_devices=6, rate=60, seed=3, malformed_fraction=0.1)
        raw = collect_batches(readings)
        windowed = collect_batches(windowed_averages(aggregate_readings(readings), 3.0, 1.0))
        await ssc.start()
        await anyio.wait_all_tasks_blocked()
        await advance_batches(ssc, 6)
        await ssc.stop()
    assert not ssc.errors
    for i, (_, records) in enumerate(windowed):
        lines = [line for _, batch in raw[max(0, i - 2): i + 1] for line in batch]
        expected = {k: v for k, v in reference(lines).items() if k != MALFORMED}
        got = dict(records)
        assert got.keys() == expected.keys()
        for key, (count, temps, humidities) in expected.items():
            assert got[key][0] == count
            assert got[key][1] == pytest.approx(temps, rel=1e-9)
            assert got[key][2] == pytest.approx(humidities, rel=1e-9)


def test_window_span_rounds_to_whole_batches() -> None:
    assert window_span(1.0, 30.0) == (30.0, 1.0)
    assert window_span(0.3, 30.0) == pytest.approx((29.7, 0.9))  # 33 slides of 3 batches
    assert window_span(2.0, 5.0) == (4.0, 2.0)


@pytest.mark.anyio
async def test_demo_output_prints_results_and_batch_statistics() -> None:
    out = io.StringIO()
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        readings = ssc.simulator_stream(num_devices=5, rate=100, seed=1, malformed_fraction=0.1)
        totals = attach_demo(ssc, readings, out, top=3)
        await ssc.start()
        await anyio.wait_all_tasks_blocked()
        await advance_batches(ssc, 3)
        await anyio.wait_all_tasks_blocked()  # let the listener bus deliver
        await ssc.stop()
    assert totals.stats is not None
    totals.stats.catch_up(ssc.batch_history)
    text = out.getvalue()
    assert text.count("== batch") == 3
    assert text.count("stats ") == 3
    assert "records 100, scheduling delay" in text
    assert totals.batches == 3
    assert totals.readings + totals.malformed == 300
    assert 0 < totals.malformed < 60


def test_format_results_ranks_the_hottest_devices() -> None:
    lines = format_results(
        0.0,
        [("dev-1", (2, 40.0, 80.0)), ("dev-2", (1, 30.0, 50.0)), (MALFORMED, (4, 0.0, 0.0))],
        top=1,
    )
    assert "3 readings from 2 devices, 4 malformed" in lines[0]
    assert lines[2].split() == ["dev-2", "1", "30.00", "50.0"]
    assert len(lines) == 3


def test_conf_command_prints_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conf"]) == 0
    text = capsys.readouterr().out
    assert "block_interval" in text and "spark.streaming.blockInterval" in text


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("aiostream-engine")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aiostream_engine.cli"]


@pytest.mark.slow
def test_cli_demo_runs_and_stops_by_itself() -> None:
    result = subprocess.run(
        [*_cli(), "demo", "--duration", "3", "--master", "local"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "== batch" in out
    assert "records" in out and "scheduling delay" in out and "processing" in out
    assert "stopped:" in out
    assert "Traceback" not in result.stderr

"""The sensor simulator: deterministic for a seed, paced by the receiver's clock."""

from __future__ import annotations

import json

import anyio
import orjson
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.sources.simulator import SensorSimulator
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio

FIELDS = {"device_id", "ts", "temp", "humidity", "kind", "seq", "fw"}


async def simulate(
    batches: int, batch_interval: float = 1.0, **options: object
) -> tuple[list[list[str]], list[int], SensorSimulator]:
    """Run a simulator on a ManualClock for ``batches`` batches; returns each batch's
    records, the records each BatchInfo counted, and the simulator."""
    simulator = SensorSimulator(**options)  # type: ignore[arg-type]
    async with StreamingContext(batch_interval, master="local", clock=ManualClock()) as ssc:
        out = collect_batches(ssc.receiver_stream(simulator))
        await ssc.start()
        await anyio.wait_all_tasks_blocked()
        infos = await advance_batches(ssc, batches)
        await ssc.stop()
    assert not ssc.errors
    return [records for _, records in out], [i.num_records for i in infos], simulator


async def test_same_seed_gives_the_same_readings() -> None:
    first, _, _ = await simulate(3, num_devices=7, rate=200, seed=42, malformed_fraction=0.1)
    second, _, _ = await simulate(3, num_devices=7, rate=200, seed=42, malformed_fraction=0.1)
    other, _, _ = await simulate(3, num_devices=7, rate=200, seed=43, malformed_fraction=0.1)
    assert first == second
    assert first != other


async def test_readings_are_json_with_the_documented_fields() -> None:
    batches, _, _ = await simulate(2, num_devices=12, rate=150, seed=1)
    readings = [json.loads(line) for batch in batches for line in batch]
    assert all(set(r) == FIELDS for r in readings)
    assert [r["seq"] for r in readings] == list(range(300))
    assert {r["device_id"] for r in readings} <= {f"dev-{i:04d}" for i in range(12)}
    assert len({r["device_id"] for r in readings}) == 12
    assert all(r["kind"] == "sensor" and 10 < r["temp"] < 35 for r in readings)
    # timestamps come from the (manual) clock: batch k holds readings stamped in (k-1, k]
    for k, batch in enumerate(batches, start=1):
        assert all(k - 1 < json.loads(line)["ts"] <= k for line in batch)
    assert 80 <= max(len(line) for batch in batches for line in batch) <= 140


async def test_rate_gives_the_expected_count_per_batch() -> None:
    batches, counted, _ = await simulate(4, rate=250, seed=3)
    assert [len(b) for b in batches] == [250, 250, 250, 250]
    assert counted == [250, 250, 250, 250]
    batches, counted, _ = await simulate(3, batch_interval=0.5, rate=1000, seed=3, tick=0.1)
    assert [len(b) for b in batches] == counted == [500, 500, 500]


async def test_fractional_rate_is_exact_over_time() -> None:
    batches, _, _ = await simulate(4, rate=2.5, seed=0)
    assert [len(b) for b in batches] == [2, 3, 2, 3]


async def test_temperatures_drift_smoothly_around_a_per_device_base() -> None:
    batches, _, simulator = await simulate(5, num_devices=4, rate=400, seed=9)
    by_device: dict[str, list[float]] = {}
    for batch in batches:
        for line in batch:
            reading = json.loads(line)
            by_device.setdefault(reading["device_id"], []).append(reading["temp"])
    for device in simulator.devices:
        temps = by_device[device.device_id]
        mean = sum(temps) / len(temps)
        assert abs(mean - device.base_temp) <= device.amplitude + 0.2
        assert max(temps) - min(temps) < 2.0  # noise is small; drift is slow


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5])
async def test_malformed_fraction_gives_that_share_of_unparsable_lines(fraction: float) -> None:
    batches, _, simulator = await simulate(
        3, rate=2000, seed=11, num_devices=20, malformed_fraction=fraction
    )
    lines = [line for batch in batches for line in batch]
    broken = 0
    for line in lines:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            broken += 1
    assert len(lines) == 6000
    assert broken == simulator.malformed
    assert abs(broken / len(lines) - fraction) < 0.02


async def test_limit_stops_the_simulator() -> None:
    batches, counted, simulator = await simulate(5, rate=100, seed=2, limit=350)
    assert [len(b) for b in batches] == [100, 100, 100, 50, 0]
    assert counted == [100, 100, 100, 50, 0]
    assert simulator.emitted == 350
    seqs = [json.loads(line)["seq"] for batch in batches for line in batch]
    assert seqs == list(range(350))


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="rate"):
        SensorSimulator(rate=0)
    with pytest.raises(ValueError, match="num_devices"):
        SensorSimulator(num_devices=0)
    with pytest.raises(ValueError, match="malformed_fraction"):
        SensorSimulator(malformed_fraction=1.5)
    with pytest.raises(ValueError, match="limit"):
        SensorSimulator(limit=-1)

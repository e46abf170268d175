"""simulator_stream: JSON readings from simulated IoT sensors, no broker needed.

``SensorSimulator`` is a Receiver that plays ``num_devices`` temperature/humidity sensors
emitting ``rate`` readings per second in total, as JSON text (one reading per record)::

    {"device_id":"dev-0042","ts":12.345,"temp":21.53,"humidity":40.2,"kind":"sensor",
     "seq":1234,"fw":"2.1.7"}

Everything is deterministic for a ``seed``: which device sends each reading, its values,
and which readings are broken (``malformed_fraction``, for dead-letter demos). Pacing
reads only the receiver's clock: every tick (the block interval, or ``tick``) it stores the
readings due up to now in one ``store_many``. Reading ``n`` is due at
``start + (n + 1) / rate``, so on a ManualClock each batch holds exactly
``rate * batch_interval`` readings.

Under a rate bound (``receiver_max_rate``, or backpressure's share for this receiver) the
simulated devices send more slowly: each tick emits at most what the bound allows, and
the readings not yet sent wait "on the devices" (a counter, no memory), stamped with the
time they were due, so a reading's ``ts`` then shows how long it waited at the source.

Each device has its own base temperature and humidity; its temperature drifts slowly
along a sine of period ``drift_period`` seconds, plus small Gaussian noise, so per-device
averages are stable and meaningful.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import orjson

from aiostream_engine.receiver.base import Receiver

FIRMWARE = ("2.1.7", "2.1.8", "2.2.0", "3.0.1")
DEFAULT_TICK = 0.1
_EPS = 1e-9


@dataclass(frozen=True)
class Device:
    device_id: str
    base_temp: float
    amplitude: float
    phase: float
    base_humidity: float
    firmware: str


class SensorSimulator(Receiver):
    """Simulated IoT devices; see the module docstring.

    Options: ``num_devices`` (100), ``rate`` (total readings per second, 1000), ``seed``
    (0), ``malformed_fraction`` (0.0), ``limit`` (stop after that many readings; None
    means endless), ``tick`` (seconds between stores; None: the block interval, or 0.1 s),
    ``drift_period`` (seconds of one temperature swing, 300).
    """

    name = "simulator"

    def __init__(
        self,
        num_devices: int = 100,
        rate: float = 1000,
        seed: int = 0,
        malformed_fraction: float = 0.0,
        limit: int | None = None,
        *,
        tick: float | None = None,
        drift_period: float = 300.0,
    ) -> None:
        super().__init__()
        if num_devices < 1:
            raise ValueError(f"num_devices must be >= 1, got {num_devices}")
        if rate <= 0:
            raise ValueError(f"rate must be > 0 readings per second, got {rate}")
        if not 0.0 <= malformed_fraction <= 1.0:
            raise ValueError(f"malformed_fraction must be within [0, 1], got {malformed_fraction}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if tick is not None and tick <= 0:
            raise ValueError(f"tick must be > 0 seconds, got {tick}")
        self.num_devices = num_devices
        self.rate = float(rate)
        self.seed = seed
        self.malformed_fraction = malformed_fraction
        self.limit = limit
        self.tick = tick
        self.drift_period = drift_period
        self._rng = random.Random(seed)
        self.devices = [self._make_device(i) for i in range(num_devices)]
        #: Readings emitted so far (the next reading's ``seq``), and how many were broken.
        self.emitted = 0
        self.malformed = 0
        self._start: float | None = None

    def _make_device(self, index: int) -> Device:
        rng = self._rng
        return Device(
            device_id=f"dev-{index:04d}",
            base_temp=round(rng.uniform(17.0, 27.0), 2),
            amplitude=rng.uniform(0.5, 2.0),
            phase=rng.uniform(0.0, 2 * math.pi),
            base_humidity=round(rng.uniform(30.0, 60.0), 1),
            firmware=rng.choice(FIRMWARE),
        )

    # ---- the readings ------------------------------------------------------------------

    def reading(self, seq: int, ts: float) -> dict[str, Any]:
        """The next reading (advances the random state): a dict, before encoding."""
        rng = self._rng
        device = self.devices[rng.randrange(self.num_devices)]
        drift = device.amplitude * math.sin(2 * math.pi * ts / self.drift_period + device.phase)
        return {
            "device_id": device.device_id,
            "ts": round(ts, 6),
            "temp": round(device.base_temp + drift + rng.gauss(0.0, 0.15), 2),
            "humidity": round(device.base_humidity + rng.gauss(0.0, 0.8), 1),
            "kind": "sensor",
            "seq": seq,
            "fw": device.firmware,
        }

    def next_line(self, ts: float) -> str:
        """Encode the next reading as JSON text; a ``malformed_fraction`` share is cut short
        (a strict prefix of a JSON object never parses)."""
        rng = self._rng
        line = orjson.dumps(self.reading(self.emitted, ts)).decode()
        self.emitted += 1
        if self.malformed_fraction and rng.random() < self.malformed_fraction:
            self.malformed += 1
            return line[: rng.randrange(1, len(line) - 1)]
        return line

    def due_until(self, now: float) -> int:
        """Readings due by ``now`` since the start (capped by ``limit``)."""
        assert self._start is not None
        due = math.floor((now - self._start) * self.rate + _EPS)
        return due if self.limit is None else min(due, self.limit)

    def waiting(self, now: float) -> int:
        """Readings due by ``now`` not sent yet: held back by a rate bound."""
        return 0 if self._start is None else max(0, self.due_until(now) - self.emitted)

    # ---- the receiver ------------------------------------------------------------------

    def _tick(self) -> float:
        if self.tick is not None:
            return self.tick
        supervisor = self._supervisor
        blocks = getattr(supervisor, "blocks", None)
        interval = getattr(blocks, "interval", None) or getattr(blocks, "_interval", None)
        return float(interval) if interval else DEFAULT_TICK

    async def on_start(self) -> None:
        clock = self.clock
        tick = self._tick()
        if self._start is None:  # a restart continues the same timeline
            self._start = clock.now()
        start = self._start
        step = max(1, math.ceil((clock.now() - start) / tick - _EPS))
        last = clock.now()
        while not self.is_stopped:
            if self.limit is not None and self.emitted >= self.limit:
                return
            await clock.sleep_until(start + step * tick)
            now = clock.now()
            # Catch up on every reading due by now in one store: on a ManualClock a jump
            # to the batch time stores the whole batch before the batch is cut.
            count = self.due_until(now) - self.emitted
            bound = self.rate_limit
            if bound is not None:
                # Bounded (receiver_max_rate, backpressure): the devices send slower and the
                # rest waits on them, stamped when it was due, instead of being generated
                # here to wait in the engine. At most one second of burst, as the limiter.
                count = min(count, max(1, math.ceil(bound * min(now - last, 1.0) - _EPS)))
            last = now
            if count > 0:
                rate = self.rate
                first = self.emitted
                lines = [self.next_line(start + (n + 1) / rate) for n in range(first, first + count)]
                await self.store_many(lines)
            step = max(step + 1, math.floor((now - start) / tick + _EPS) + 1)

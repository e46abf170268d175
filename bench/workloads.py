"""The benchmark workloads: seeded data generators and the per-record functions.

Every engine (ours, PySpark, the hand-written ceiling) runs the same functions from this
module over the same data, so the figures differ only by the engine. The functions are
module-level so that cloudpickle ships them by reference (workers import ``bench``).

- W1 word count: lines of 10 words drawn Zipf-style (p ~ 1/rank) from 1,000 words.
- W2 IoT JSON: ~125-byte readings of 10,000 devices (uniform); parse with orjson, key by
  device, reduce (sum temp, count).
- W3 windowed: W2's keyed pairs, then reduce_by_key_and_window(add, subtract) over 30
  batches sliding by one, with checkpointing.
- W4 latency: W2 readings from a receiver (see ``bench.latency``).
- W2S: W2's keyed pairs grouped by device, no map-side combine: every pair crosses the
  shuffle (``bench.dask_scaling``: bytes through the driver against shuffle size).
"""

from __future__ import annotations

import gc
import itertools
import json
import operator
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

SEED = 20240605
VOCABULARY_SIZE = 1_000
WORDS_PER_LINE = 10
DEVICES = 10_000

Pair = tuple[float, int]

# ---- per-record functions (the work every engine does) ------------------------------


def split_words(line: str) -> list[str]:
    return line.split()


def pair_one(word: str) -> tuple[str, int]:
    return word, 1


add = operator.add


def parse_reading(line: str | bytes) -> tuple[str, Pair]:
    """W2's map: parse a JSON reading, key it by device with (temp, 1)."""
    reading = orjson.loads(line)
    return reading["device_id"], (reading["temp"], 1)


def add_pair(a: Pair, b: Pair) -> Pair:
    return a[0] + b[0], a[1] + b[1]


def sub_pair(a: Pair, b: Pair) -> Pair:
    return a[0] - b[0], a[1] - b[1]


# ---- generators -----------------------------------------------------------------------


def vocabulary(size: int = VOCABULARY_SIZE, seed: int = SEED) -> list[str]:
    """Distinct pronounceable pseudo-words of 2 to 5 syllables, rank order = list order."""
    rng = random.Random(seed)
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        word = "".join(
            rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(2, 5))
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def word_lines(count: int, seed: int = SEED) -> list[str]:
    """W1: ``count`` lines of 10 Zipf-distributed words."""
    words = vocabulary(seed=seed)
    weights = list(itertools.accumulate(1.0 / rank for rank in range(1, len(words) + 1)))
    rng = random.Random(seed + 1)
    drawn = rng.choices(words, cum_weights=weights, k=count * WORDS_PER_LINE)
    return [" ".join(drawn[i : i + WORDS_PER_LINE]) for i in range(0, len(drawn), WORDS_PER_LINE)]


def reading(rng: random.Random, seq: int, ts: float) -> dict[str, Any]:
    return {
        "device_id": f"dev-{rng.randrange(DEVICES):04d}",
        "ts": round(ts, 3),
        "temp": round(rng.uniform(15.0, 30.0), 2),
        "humidity": round(rng.uniform(20.0, 80.0), 1),
        "kind": "sensor",
        "seq": seq,
        "fw": "2.1.7",
    }


def iot_lines(count: int, seed: int = SEED, start_ts: float = 1_717_000_000.0) -> list[str]:
    """W2: ``count`` JSON readings (about 125 bytes each), devices uniform."""
    rng = random.Random(seed + 2)
    dumps = json.dumps  # the layout: ", " and ": " separators, ~125 bytes
    return [dumps(reading(rng, seq, start_ts + seq * 1e-4)) for seq in range(count)]


@dataclass
class Dataset:
    """Lines of one workload, sliced: the batch of size N is the first N lines, so every
    size (and every engine) sees the same records. The generators are prefix-stable (the
    first N of 2N generated lines are the N lines), so a larger size regenerates."""

    workload: str
    _lines: list[str]

    @classmethod
    def empty(cls, workload: str) -> Dataset:
        return cls(workload, [])

    def lines(self, count: int) -> list[str]:
        """The first ``count`` lines. A larger size first frees the previous lines: the
        previous size's StreamingContext still reached them through reference cycles that
        only the cycle collector frees, so without ``gc.collect()`` they lived on while
        the new lines were generated and the runner's peak carried the previous size's
        data (driver 270 MB instead of 195 MB at N=800k after 400k, measured per process);
        PySpark's driver gets the same treatment."""
        if count > len(self._lines):
            generate = word_lines if self.workload == "W1" else iot_lines
            self._lines = []
            gc.collect()
            self._lines = generate(count)
        return self._lines if count == len(self._lines) else self._lines[:count]


# ---- the reference implementation (used by the ceiling and the correctness check) ----


def word_count(lines: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    get = counts.get
    for line in lines:
        for word in line.split():
            counts[word] = get(word, 0) + 1
    return counts


def device_totals(lines: Iterable[str | bytes]) -> dict[str, Pair]:
    totals: dict[str, Pair] = {}
    loads = orjson.loads
    for line in lines:
        r = loads(line)
        key = r["device_id"]
        old = totals.get(key)
        totals[key] = (r["temp"], 1) if old is None else (old[0] + r["temp"], old[1] + 1)
    return totals


def merge_into(target: dict[str, Pair], delta: dict[str, Pair], sign: int) -> None:
    for key, (temp, count) in delta.items():
        old = target.get(key, (0.0, 0))
        target[key] = (old[0] + sign * temp, old[1] + sign * count)


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- the pipelines, in PySpark's names (our DStream answers to them too) --------------


def build_pipeline(workload: str, stream: Any, interval: float, window_batches: int) -> Any:
    """The DStream each workload outputs; ``stream`` carries the workload's lines."""
    if workload == "W1":
        return stream.flatMap(split_words).map(pair_one).reduceByKey(add)
    pairs = stream.map(parse_reading)
    if workload == "W2":
        return pairs.reduceByKey(add_pair)
    if workload == "W3":
        window = window_batches * interval
        return pairs.reduceByKeyAndWindow(add_pair, sub_pair, window, interval)
    if workload == "W2S":  # every pair through the shuffle (bench.dask_scaling)
        return pairs.groupByKey().mapValues(len)
    raise ValueError(f"unknown workload {workload!r}")

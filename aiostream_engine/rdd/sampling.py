"""Random samples of an RDD's records, reproducible from a seed (PySpark's ``sample`` and
``takeSample``).

Each partition draws from its own generator seeded by ``(seed, partition)``, so a
recomputed partition (a retried task) draws the same sample. Without replacement a record
is kept with probability ``fraction``; with replacement it appears a Poisson(``fraction``)
number of times. ``take_sample_fraction`` is Spark's choice of the fraction that makes a
sample of at least ``num`` records very likely (99.99%), so ``takeSample`` rarely samples
twice.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def sampler(
    with_replacement: bool, fraction: float, seed: int
) -> Callable[[int, Iterator[Any]], Iterable[Any]]:
    """The stage that samples one partition."""
    if fraction < 0 or (not with_replacement and fraction > 1):
        raise ValueError(
            f"sample: fraction must be in [0, 1] without replacement and >= 0 with it, "
            f"got {fraction}"
        )

    def sample(index: int, records: Iterator[Any]) -> Iterator[Any]:
        rng = random.Random(f"{seed}:{index}")
        if with_replacement:
            for record in records:
                for _ in range(_poisson(rng, fraction)):
                    yield record
        else:
            for record in records:
                if rng.random() < fraction:
                    yield record

    return sample


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count (Knuth's method, fine for the small means sampling uses;
    larger ones are split into parts)."""
    total = 0
    while mean > 30:
        total += _poisson(rng, 30)
        mean -= 30
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return total + k


def take_sample_fraction(num: int, total: int, with_replacement: bool) -> float:
    """Spark's sampling fraction for ``takeSample(num)`` out of ``total`` records."""
    fraction = num / total
    if with_replacement:
        deviations = 9 if num < 12 else 5
        return max(num + deviations * math.sqrt(num), 1e-10) / total
    gamma = -math.log(1e-4) / total
    return min(1.0, max(1e-10, fraction + gamma + math.sqrt(gamma * gamma + 2 * gamma * fraction)))


def new_seed() -> int:
    """A seed for a sample the caller gave none for."""
    return random.randrange(1 << 62)

"""``StatCounter``: count, mean, variance, min and max of numbers in one pass (PySpark's
``RDD.stats()``), mergeable across partitions.

Variance uses Welford's update per value and Chan et al.'s formula to merge two counters,
so partitions are summarised where they are and only the summaries reach the driver.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any


class StatCounter:
    """Running statistics of numbers; ``merge`` one value, ``merge_stats`` another counter."""

    # PySpark's names, written by `python scripts/aliases.py --update` from aliases.ALIASES
    if TYPE_CHECKING:
        mergeStats: Callable[..., StatCounter]
        sampleVariance: Callable[..., float]
        sampleStdev: Callable[..., float]
        asDict: Callable[..., dict[str, Any]]
    # end of PySpark's names

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.n = 0
        self.mu = 0.0
        self.m2 = 0.0
        self.max_value = -math.inf
        self.min_value = math.inf
        for value in values:
            self.merge(value)

    def merge(self, value: float) -> StatCounter:
        """Add one value."""
        self.n += 1
        delta = value - self.mu
        self.mu += delta / self.n
        self.m2 += delta * (value - self.mu)
        self.max_value = max(self.max_value, value)
        self.min_value = min(self.min_value, value)
        return self

    def merge_stats(self, other: StatCounter) -> StatCounter:
        """Add every value another counter has seen."""
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mu, self.m2 = other.n, other.mu, other.m2
        else:
            delta = other.mu - self.mu
            total = self.n + other.n
            self.mu += delta * other.n / total
            self.m2 += other.m2 + delta * delta * self.n * other.n / total
            self.n = total
        self.max_value = max(self.max_value, other.max_value)
        self.min_value = min(self.min_value, other.min_value)
        return self

    def count(self) -> int:
        """How many values."""
        return self.n

    def mean(self) -> float:
        """Their mean (nan for none)."""
        return self.mu if self.n else math.nan

    def sum(self) -> float:
        """Their sum."""
        return self.n * self.mu

    def min(self) -> float:
        """The smallest (inf for none)."""
        return self.min_value

    def max(self) -> float:
        """The largest (-inf for none)."""
        return self.max_value

    def variance(self) -> float:
        """Population variance (nan for none)."""
        return self.m2 / self.n if self.n else math.nan

    def sample_variance(self) -> float:
        """Sample variance, dividing by n - 1 (nan for fewer than two values)."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    def stdev(self) -> float:
        """Population standard deviation."""
        return math.sqrt(self.variance())

    def sample_stdev(self) -> float:
        """Sample standard deviation."""
        return math.sqrt(self.sample_variance())

    def as_dict(self, sample: bool = False) -> dict[str, Any]:
        """The statistics by name (PySpark's ``asDict``)."""
        return {
            "count": self.count(),
            "mean": self.mean(),
            "sum": self.sum(),
            "min": self.min(),
            "max": self.max(),
            "stdev": self.sample_stdev() if sample else self.stdev(),
            "variance": self.sample_variance() if sample else self.variance(),
        }

    def __repr__(self) -> str:
        return (
            f"(count: {self.count()}, mean: {self.mean()}, stdev: {self.stdev()}, "
            f"max: {self.max()}, min: {self.min()})"
        )


def partition_stats(values: Iterable[float]) -> list[StatCounter]:
    """One partition's counter (a task's work)."""
    return [StatCounter(values)]

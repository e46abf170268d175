"""Batch times are integer milliseconds inside the engine, so batch and window arithmetic
never drifts; the public API speaks seconds as floats."""

from __future__ import annotations

from datetime import datetime

from .errors import ConfigurationError


def to_ms(seconds: float, what: str = "duration") -> int:
    ms = round(seconds * 1000)
    if abs(ms - seconds * 1000) > 1e-6 * max(1.0, abs(seconds * 1000)):
        raise ConfigurationError(f"{what} {seconds} s is not a whole number of milliseconds")
    return ms


def to_seconds(ms: int) -> float:
    return ms / 1000.0


def require_multiple(duration_ms: int, batch_ms: int, what: str) -> None:
    """Window and slide durations must be multiples of the batch interval (Spark's rule)."""
    if duration_ms <= 0 or duration_ms % batch_ms:
        raise ValueError(
            f"{what} ({to_seconds(duration_ms):g} s) must be a positive multiple of the "
            f"batch interval ({to_seconds(batch_ms):g} s)"
        )


def time_ms(value: float | datetime, what: str = "time") -> int:
    """A point in time given as seconds or as a ``datetime`` (PySpark's batch times), in
    milliseconds; a naive datetime is local time, as PySpark's are."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return to_ms(value, what)

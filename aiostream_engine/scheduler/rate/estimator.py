"""Rate estimators: from what each completed batch took, the rate a stream should ingest at
(Spark's ``scheduler/rate/RateEstimator`` and ``PIDRateEstimator``).

Seconds everywhere: ``time`` is when the batch finished processing (on the engine's
clock), the delays are in seconds, rates are records per second.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from ...conf import StreamingConf

#: Our key -> Spark's key, for error messages that name both.
PID_KEYS = {
    "proportional": ("backpressure_pid_proportional", "spark.streaming.backpressure.pid.proportional"),
    "integral": ("backpressure_pid_integral", "spark.streaming.backpressure.pid.integral"),
    "derivative": ("backpressure_pid_derived", "spark.streaming.backpressure.pid.derived"),
    "min_rate": ("backpressure_pid_min_rate", "spark.streaming.backpressure.pid.minRate"),
}


def check_pid_settings(
    proportional: float, integral: float, derivative: float, min_rate: float
) -> None:
    """Raise ConfigurationError, naming the Spark key, for a negative gain or a minimum rate
    that is not positive (Spark's PIDRateEstimator requirements)."""
    gains = {"proportional": proportional, "integral": integral, "derivative": derivative}
    for name, value in gains.items():
        if not value >= 0:
            ours, spark = PID_KEYS[name]
            raise ConfigurationError(f"{spark} ({ours}) must be >= 0, got {value}")
    if not min_rate > 0:
        ours, spark = PID_KEYS["min_rate"]
        raise ConfigurationError(f"{spark} ({ours}) must be > 0, got {min_rate}")


class RateEstimator(Protocol):
    """Computes a stream's new ingestion bound from one completed batch."""

    def compute(
        self, time: float, num_elements: int, processing_delay: float, scheduling_delay: float
    ) -> float | None:
        """The new rate in records/s, or None when this batch gives no new estimate."""
        ...


class PIDRateEstimator:
    """A proportional-integral-derivative controller whose set point is the rate the job
    processes at (Spark's PIDRateEstimator, with its formula and update rules):

    * processing_rate = records / processing_delay
    * error = latest_rate - processing_rate (we asked for more than was processed)
    * historical_error = scheduling_delay * processing_rate / batch_interval: the records
      queued behind earlier batches, as a rate spread over one batch (the integral term)
    * d_error = (error - latest_error) / (time - latest_time)
    * new_rate = max(latest_rate - proportional * error - integral * historical_error
      - derivative * d_error, min_rate)

    A batch updates the estimator only if ``time`` advanced, it held records and its
    processing took time; the first such batch only records its processing rate as the
    latest rate (and gives None).
    """

    def __init__(
        self,
        batch_interval: float,
        proportional: float = 1.0,
        integral: float = 0.2,
        derivative: float = 0.0,
        min_rate: float = 100.0,
    ) -> None:
        if not batch_interval > 0:
            raise ConfigurationError(
                f"the batch interval of a PID rate estimator must be > 0 s, got {batch_interval}"
            )
        check_pid_settings(proportional, integral, derivative, min_rate)
        self.batch_interval = float(batch_interval)
        self.proportional = float(proportional)
        self.integral = float(integral)
        self.derivative = float(derivative)
        self.min_rate = float(min_rate)
        self._first_run = True
        self._latest_time = -math.inf
        self._latest_rate = -1.0
        self._latest_error = -1.0

    def compute(
        self, time: float, num_elements: int, processing_delay: float, scheduling_delay: float
    ) -> float | None:
        if not (time > self._latest_time and num_elements > 0 and processing_delay > 0):
            return None
        since_update = time - self._latest_time
        processing_rate = num_elements / processing_delay
        error = self._latest_rate - processing_rate
        historical_error = scheduling_delay * processing_rate / self.batch_interval
        d_error = (error - self._latest_error) / since_update
        new_rate = max(
            self._latest_rate
            - self.proportional * error
            - self.integral * historical_error
            - self.derivative * d_error,
            self.min_rate,
        )
        self._latest_time = time
        if self._first_run:
            self._latest_rate = processing_rate
            self._latest_error = 0.0
            self._first_run = False
            return None
        self._latest_rate = new_rate
        self._latest_error = error
        return new_rate

    def __repr__(self) -> str:
        return (
            f"PIDRateEstimator(batch_interval={self.batch_interval:g}, "
            f"proportional={self.proportional:g}, integral={self.integral:g}, "
            f"derivative={self.derivative:g}, min_rate={self.min_rate:g})"
        )


def check_backpressure_conf(conf: StreamingConf) -> None:
    """Raise ConfigurationError, naming the Spark key, for an unknown estimator or invalid
    PID settings."""
    if conf.backpressure_rate_estimator != "pid":
        raise ConfigurationError(
            "spark.streaming.backpressure.rateEstimator (backpressure_rate_estimator) must be "
            f'"pid", got {conf.backpressure_rate_estimator!r}'
        )
    check_pid_settings(
        conf.backpressure_pid_proportional,
        conf.backpressure_pid_integral,
        conf.backpressure_pid_derived,
        conf.backpressure_pid_min_rate,
    )
    if not 0 <= conf.backpressure_headroom < 1:
        raise ConfigurationError(
            f"backpressure_headroom must be in [0, 1), got {conf.backpressure_headroom}"
        )
    if conf.backpressure_rate_window < 0:
        raise ConfigurationError(
            f"backpressure_rate_window must be >= 0 batches, got {conf.backpressure_rate_window}"
        )


def create_rate_estimator(conf: StreamingConf, batch_interval: float) -> RateEstimator:
    """The estimator ``backpressure_rate_estimator`` names, with the configured gains."""
    check_backpressure_conf(conf)
    return PIDRateEstimator(
        batch_interval,
        conf.backpressure_pid_proportional,
        conf.backpressure_pid_integral,
        conf.backpressure_pid_derived,
        conf.backpressure_pid_min_rate,
    )

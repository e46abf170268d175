"""Backpressure (Spark's scheduler/rate): rate estimators and per-stream rate controllers."""

from __future__ import annotations

from .controller import (
    RateController,
    new_rate_controller,
    rate_controllers,
    receiver_rate,
    share_rate_controller,
)
from .estimator import PIDRateEstimator, RateEstimator, create_rate_estimator

__all__ = [
    "PIDRateEstimator",
    "RateController",
    "RateEstimator",
    "create_rate_estimator",
    "new_rate_controller",
    "rate_controllers",
    "receiver_rate",
    "share_rate_controller",
]

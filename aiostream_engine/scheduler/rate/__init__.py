"""Backpressure (Spark's scheduler/rate): rate estimators and per-stream rate controllers."""

from __future__ import annotations

from .estimator import PIDRateEstimator, RateEstimator, create_rate_estimator

__all__ = ["PIDRateEstimator", "RateEstimator", "create_rate_estimator"]

"""PIDRateEstimator on the cases of Spark's PIDRateEstimatorSuite, in seconds, with the
expected values computed from the formula (DESIGN.md section 4) in the test."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from aiostream_engine import ConfigurationError, StreamingConf
from aiostream_engine.scheduler.rate import PIDRateEstimator, create_rate_estimator


@dataclass
class Formula:
    """The PID update written out step by step: the reference the estimator must match."""

    batch: float
    kp: float
    ki: float
    kd: float
    min_rate: float
    latest_time: float | None = None
    latest_rate: float | None = None
    latest_error: float = 0.0

    def step(self, time: float, records: int, processing: float, scheduling: float) -> float | None:
        processing_rate = records / processing
        if self.latest_rate is None:  # first update: remember the processing rate only
            self.latest_time, self.latest_rate = time, processing_rate
            return None
        assert self.latest_time is not None
        error = self.latest_rate - processing_rate
        historical_error = scheduling * processing_rate / self.batch
        d_error = (error - self.latest_error) / (time - self.latest_time)
        new_rate = self.latest_rate - self.kp * error - self.ki * historical_error - self.kd * d_error
        new_rate = max(new_rate, self.min_rate)
        self.latest_time, self.latest_rate, self.latest_error = time, new_rate, error
        return new_rate


def run(estimator: PIDRateEstimator, times, records, processing, scheduling) -> list[float | None]:  # type: ignore[no-untyped-def]
    return [estimator.compute(*args) for args in zip(times, records, processing, scheduling, strict=True)]


def test_first_estimate_is_none() -> None:
    p = PIDRateEstimator(0.02)
    assert p.compute(0.01, 10, 0.01, 0.0) is None


def test_second_estimate_is_not_none() -> None:
    p = PIDRateEstimator(0.02)
    p.compute(0.01, 10, 0.01, 0.0)
    # The second batch processed at 1000 rec/s like the first: no error, rate 1000.
    assert p.compute(0.02, 10, 0.01, 0.0) == pytest.approx(1000.0)


def test_no_estimate_when_time_did_not_advance() -> None:
    p = PIDRateEstimator(0.02)
    p.compute(0.01, 10, 0.01, 0.0)
    assert p.compute(0.02, 10, 0.01, 0.0) is not None
    assert p.compute(0.02, 10, 0.01, 0.0) is None  # same time
    assert p.compute(0.015, 10, 0.01, 0.0) is None  # earlier time


def test_no_estimate_when_there_were_no_records() -> None:
    p = PIDRateEstimator(0.02)
    p.compute(0.01, 10, 0.01, 0.0)
    assert p.compute(0.02, 0, 0.01, 0.0) is None


def test_no_estimate_when_there_was_no_processing_delay() -> None:
    p = PIDRateEstimator(0.02)
    p.compute(0.01, 10, 0.01, 0.0)
    assert p.compute(0.02, 10, 0.0, 0.0) is None


def test_a_skipped_batch_leaves_the_state_as_it_was() -> None:
    """Skipped batches (no records, no delay, no time) change nothing: the next estimate is
    the formula's on the last accepted batch."""
    p, ref = PIDRateEstimator(0.5, 1.0, 0.2, 0.1, 10.0), Formula(0.5, 1.0, 0.2, 0.1, 10.0)
    assert p.compute(1.0, 400, 0.5, 0.0) is None and ref.step(1.0, 400, 0.5, 0.0) is None
    assert p.compute(1.5, 300, 0.5, 0.25) == pytest.approx(ref.step(1.5, 300, 0.5, 0.25), rel=1e-12)
    assert p.compute(2.0, 0, 0.5, 0.0) is None
    assert p.compute(2.0, 10, 0.0, 0.0) is None
    assert p.compute(1.5, 10, 0.3, 0.0) is None
    assert p.compute(2.5, 250, 0.4, 0.1) == pytest.approx(ref.step(2.5, 250, 0.4, 0.1), rel=1e-12)


def test_estimate_is_never_less_than_min_rate() -> None:
    min_rate = 5.0
    p = PIDRateEstimator(0.02, 1.0, 1.0, 0.0, min_rate)
    # One record per 20 ms batch (50 rec/s) with a strictly positive scheduling delay of
    # 100 ms: the integral term alone asks for 50 - 1 * (0.1 * 50 / 0.02) = -200 rec/s.
    times = [i * 0.02 for i in range(50)]
    res = run(p, times, [1] * 50, [0.02] * 50, [0.1] * 50)
    assert res[0] is None
    assert res[1:] == [min_rate] * 49


def test_with_no_accumulated_or_positive_error_it_follows_the_processing_speed() -> None:
    p = PIDRateEstimator(0.02, 1.0, 1.0, 0.0, 10.0)
    times = [i * 0.02 for i in range(50)]
    res = run(p, times, [1] * 50, [0.02] * 50, [0.0] * 50)
    assert res[0] is None
    assert res[1:] == [pytest.approx(1 / 0.02)] * 49  # 50 rec/s, the processing rate


def test_with_no_accumulated_but_some_positive_error_it_follows_the_processing_speed() -> None:
    """The processing rate rises each batch; with kp = 1 and no scheduling delay the new
    rate is exactly the processing rate, whatever ki is."""
    p = PIDRateEstimator(0.02, 1.0, 1.0, 0.0, 10.0)
    times = [i * 0.02 for i in range(50)]
    records = [(i + 1) * 20 for i in range(50)]
    res = run(p, times, records, [0.02] * 50, [0.0] * 50)
    assert res[0] is None
    assert res[1:] == [pytest.approx((i + 1) * 1000.0) for i in range(1, 50)]


def test_with_some_accumulated_and_some_positive_error_it_stays_below_the_processing_speed() -> None:
    min_rate = 10.0
    p = PIDRateEstimator(0.02, 1.0, 0.01, 0.0, min_rate)
    ref = Formula(0.02, 1.0, 0.01, 0.0, min_rate)
    rng = random.Random(13)
    times = [i * 0.02 for i in range(50)]
    records = [rng.randrange(1000, 2000) for _ in range(50)]
    scheduling = [rng.randrange(1, 20) / 1000 for _ in range(50)]
    speeds = [r / 0.02 for r in records]
    res = run(p, times, records, [0.02] * 50, scheduling)
    expected = [ref.step(*args) for args in zip(times, records, [0.02] * 50, scheduling, strict=True)]
    assert res[0] is None and expected[0] is None
    for n in range(1, 50):
        assert res[n] == pytest.approx(expected[n], rel=1e-12)
        assert min_rate <= res[n] < speeds[n]  # type: ignore[operator]


def test_every_term_matches_the_formula() -> None:
    """All three gains at once, with a varying batch spacing (the derivative divides by the
    time since the last update) and the min rate clamping some steps."""
    gains = (0.8, 0.3, 0.05, 50.0)
    p, ref = PIDRateEstimator(0.5, *gains), Formula(0.5, *gains)
    rng = random.Random(7)
    t = 10.0
    for _ in range(200):
        t += rng.choice([0.5, 0.5, 1.0, 0.7])
        args = (t, rng.randrange(1, 5000), rng.uniform(0.01, 2.0), rng.choice([0.0, rng.uniform(0, 3)]))
        got, want = p.compute(*args), ref.step(*args)
        assert (got is None and want is None) or got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "spark_key"),
    [
        ({"proportional": -0.1}, "spark.streaming.backpressure.pid.proportional"),
        ({"integral": -1.0}, "spark.streaming.backpressure.pid.integral"),
        ({"derivative": -2.0}, "spark.streaming.backpressure.pid.derived"),
        ({"min_rate": 0.0}, "spark.streaming.backpressure.pid.minRate"),
        ({"min_rate": -5.0}, "spark.streaming.backpressure.pid.minRate"),
    ],
)
def test_invalid_settings_raise_naming_the_spark_key(kwargs: dict[str, float], spark_key: str) -> None:
    with pytest.raises(ConfigurationError, match=spark_key.replace(".", r"\.")):
        PIDRateEstimator(1.0, **kwargs)
    ours = {"proportional": "backpressure_pid_proportional", "integral": "backpressure_pid_integral",
            "derivative": "backpressure_pid_derived", "min_rate": "backpressure_pid_min_rate"}
    (name, value), = kwargs.items()
    with pytest.raises(ConfigurationError, match=spark_key.replace(".", r"\.")):
        StreamingConf.of({spark_key: value})
    with pytest.raises(ConfigurationError, match=ours[name]):
        StreamingConf(**{ours[name]: value})


def test_zero_gains_are_valid() -> None:
    p = PIDRateEstimator(1.0, 0.0, 0.0, 0.0, 1.0)
    p.compute(1.0, 100, 0.5, 0.0)
    assert p.compute(2.0, 10, 0.5, 1.0) == 200.0  # no correction at all: the first rate


def test_the_batch_interval_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="batch interval"):
        PIDRateEstimator(0.0)


def test_conf_builds_the_estimator_from_spark_keys() -> None:
    conf = StreamingConf.of({
        "spark.streaming.backpressure.enabled": "true",
        "spark.streaming.backpressure.initialRate": "300",
        "spark.streaming.backpressure.pid.proportional": "0.5",
        "spark.streaming.backpressure.pid.integral": "0.1",
        "spark.streaming.backpressure.pid.derived": "0.01",
        "spark.streaming.backpressure.pid.minRate": "20",
    })
    assert conf.backpressure_enabled and conf.backpressure_initial_rate == 300.0
    estimator = create_rate_estimator(conf, 2.0)
    assert isinstance(estimator, PIDRateEstimator)
    assert (estimator.batch_interval, estimator.proportional, estimator.integral,
            estimator.derivative, estimator.min_rate) == (2.0, 0.5, 0.1, 0.01, 20.0)


def test_defaults_are_sparks() -> None:
    conf = StreamingConf()
    assert conf.backpressure_enabled is False
    estimator = create_rate_estimator(conf, 1.0)
    assert isinstance(estimator, PIDRateEstimator)
    assert (estimator.proportional, estimator.integral, estimator.derivative,
            estimator.min_rate) == (1.0, 0.2, 0.0, 100.0)


def test_only_the_pid_estimator_exists() -> None:
    with pytest.raises(ConfigurationError, match=r"spark\.streaming\.backpressure\.rateEstimator"):
        StreamingConf.of({"spark.streaming.backpressure.rateEstimator": "magic"})

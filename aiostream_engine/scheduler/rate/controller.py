"""The rate controller of an input stream (Spark's RateController): fed by every completed
batch, it keeps the stream's current ingestion bound and tells whoever applies it.

One controller bounds one input stream; the N receivers of one logical stream (MQTT's
``num_receivers``: N input streams sharing a subscription) share one controller, which
counts the records of all N and whose bound is split evenly over them.

Who applies the bound: each receiver's rate limiter (``receiver_rate``), the file stream
when it picks files, the direct Kafka stream when it sizes its offset ranges; they read
``latest_rate()`` or subscribe to changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ..batch_info import BatchInfo
from .estimator import RateEstimator, create_rate_estimator

if TYPE_CHECKING:
    from ...conf import StreamingConf
    from ...dstream.input import InputDStream

RateListener = Callable[["RateController", float], None]


class RateController:
    """The ingestion bound, in records per second, of one input stream (or of the input
    streams of one logical stream's receivers)."""

    def __init__(
        self,
        name: str,
        stream_ids: Sequence[int],
        estimator: RateEstimator,
        *,
        initial_rate: float = 0.0,
        headroom: float = 0.0,
        rate_window: int = 0,
    ) -> None:
        if not stream_ids:
            raise ValueError("a rate controller bounds at least one input stream")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {headroom}")
        if rate_window < 0:
            raise ValueError(f"rate_window must be >= 0, got {rate_window}")
        self.name = name
        self.stream_ids = tuple(stream_ids)
        self._counted = list(self.stream_ids)
        self.estimator = estimator
        self.initial_rate = float(initial_rate)
        self.headroom = float(headroom)
        self.rate_window = rate_window
        #: (records, processing seconds) of the last ``rate_window`` batches with records.
        self._recent: deque[tuple[int, float]] = deque(maxlen=max(rate_window, 1))
        self._bound: float | None = None
        self._listeners: list[RateListener] = []
        #: Completed batches seen, and how many gave a new bound.
        self.batches_seen = 0
        self.updates = 0

    @property
    def num_receivers(self) -> int:
        """How many receivers share the bound (one per input stream of the group)."""
        return len(self.stream_ids)

    def count_records_of(self, stream_id: int) -> None:
        """Count this stream's records too: it holds part of what the bounded streams took
        from their source (the dead letters of a decoded stream)."""
        if stream_id not in self._counted:
            self._counted.append(stream_id)

    def latest_rate(self) -> float | None:
        """The whole stream's bound in records/s: the latest estimate less the headroom
        (``backpressure_headroom``); before the first estimate,
        ``backpressure_initial_rate`` if set, else the processing rate of the first batch
        that had records (Spark leaves the stream unbounded until its second estimate
        batch: a source offering more than the job sustains floods every batch generated
        meanwhile); None while there is none of these (no bound)."""
        if self._bound is not None:
            return self._bound
        return self.initial_rate if self.initial_rate > 0 else None

    def subscribe(self, listener: RateListener) -> None:
        """Call ``listener(controller, new_rate)`` on every new estimate."""
        self._listeners.append(listener)

    def on_batch_completed(self, info: BatchInfo) -> float | None:
        """Feed one completed batch: this stream's records (with those counted along), its
        processing and scheduling delays, at the time its processing ended. Returns the new
        bound, if any: the estimate, capped by the processing rate of the last
        ``rate_window`` batches (``backpressure_rate_window``), less the headroom.

        Why the cap: with Spark's gains the estimate is the last batch's processing rate
        (less the scheduling delay's share), so on a machine whose speed varies from batch
        to batch, a batch that ran fast sets a bound the next, slower one cannot process
        within a batch interval: on average the job then runs nearer its limit than the
        headroom leaves, and batches queue. Over a few batches, the rate (their records
        over their processing time, not a mean of rates) is what the job sustains.

        A batch whose output failed is skipped: the time it took measures the failure, not
        what the job can process.
        """
        inputs = [info.stream_id_to_input_info.get(i) for i in self._counted]
        present = [i for i in inputs if i is not None]
        end = info.processing_end_time
        processing = info.processing_delay
        scheduling = info.scheduling_delay
        if not present or end is None or processing is None or scheduling is None:
            return None
        if info.failed:
            return None
        self.batches_seen += 1
        records = sum(i.num_records for i in present)
        if records > 0 and processing > 0:
            self._recent.append((records, processing))
        rate = self.estimator.compute(end, records, processing, scheduling)
        if rate is None:
            if self._bound is None and self.initial_rate <= 0 and records > 0 and processing > 0:
                rate = records / processing  # provisional: what the first batch processed at
            else:
                return None
        if self.rate_window > 1:
            rate = min(rate, sum(n for n, _ in self._recent) / sum(p for _, p in self._recent))
        bound = rate * (1.0 - self.headroom)
        self._bound = bound
        self.updates += 1
        for listener in list(self._listeners):
            listener(self, bound)
        return bound

    def __repr__(self) -> str:
        return f"RateController({self.name!r}, streams={list(self.stream_ids)}, rate={self.latest_rate()})"


def receiver_rate(stream_rate: float | None, num_receivers: int, max_rate: float) -> float:
    """What each of a stream's receivers may store per second: the stream's bound split
    evenly over its receivers, never above ``max_rate`` (``receiver_max_rate``; <= 0: no
    cap). 0 means unlimited (no bound and no cap)."""
    share = stream_rate / num_receivers if stream_rate is not None and stream_rate > 0 else 0.0
    if max_rate > 0:
        return min(share, max_rate) if share > 0 else max_rate
    return share


def new_rate_controller(
    conf: StreamingConf, batch_interval: float, name: str, stream_ids: Sequence[int]
) -> RateController | None:
    """A controller for these streams if backpressure is on (``backpressure_enabled``), else
    None."""
    if not conf.backpressure_enabled:
        return None
    return RateController(
        name,
        stream_ids,
        create_rate_estimator(conf, batch_interval),
        initial_rate=conf.backpressure_initial_rate,
        headroom=conf.backpressure_headroom,
        rate_window=conf.backpressure_rate_window,
    )


def rate_controllers(streams: Iterable[InputDStream]) -> list[RateController]:
    """The distinct rate controllers of these input streams (shared ones once), in order."""
    seen: dict[int, RateController] = {}
    for stream in streams:
        controller = stream.rate_controller
        if controller is not None:
            seen.setdefault(id(controller), controller)
    return list(seen.values())


def share_rate_controller(streams: Sequence[InputDStream], name: str) -> RateController | None:
    """Make the input streams of one logical stream's receivers (e.g. MQTT's
    ``num_receivers``) share one controller: it counts all their records, and its bound is
    split evenly over them. Call it before the context starts; None without backpressure."""
    if not streams or streams[0].rate_controller is None:
        return None
    ssc = streams[0]._ssc
    shared = new_rate_controller(ssc.conf, ssc.batch_interval, name, [s.id for s in streams])
    for stream in streams:
        stream.rate_controller = shared
    return shared

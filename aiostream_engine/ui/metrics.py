"""Prometheus metrics of one context, in their own registry (``ssc.metrics_registry``).

Two kinds of source:

* listener events (``StreamingMetrics`` is a listener): batches completed and failed,
  records per input stream, the delays as histograms and the last batch's as gauges;
* counters the engine keeps on its parts, read at scrape time (``EngineCollector``): task
  attempts, receiver restarts and errors, dead letters, rate bounds, the write-ahead log,
  checkpoint writes, state sizes, listener events dropped, the event-loop lag.

A new counter elsewhere in the engine becomes a metric by one line in ``EngineView`` and
one family here; a new listener event by one ``on_*`` method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..scheduler.listener import BatchCompleted, StreamingListener
from .engine_view import EngineView
from .live import LiveFeed
from .status import StreamingStatus

#: Seconds: from a 0.1 s batch's few milliseconds to a minute-long batch falling behind.
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds the event loop woke late: anything past a few milliseconds is worth seeing.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

STREAM_LABELS = ("stream_id", "stream")


class StreamingMetrics(StreamingListener):
    """The listener-fed metrics; registers the scrape-time collector too."""

    def __init__(
        self,
        registry: CollectorRegistry,
        status: StreamingStatus,
        view: EngineView,
        feed: LiveFeed,
    ) -> None:
        self._names: dict[int, str] = {}
        self.batches_completed = Counter(
            "aiostream_batches_completed", "Batches whose jobs have all finished.",
            registry=registry,
        )
        self.checkpoint_failures = Counter(
            "aiostream_checkpoint_write_failures", "Checkpoint writes that failed (each attempt).",
            ["kind"], registry=registry,
        )
        self.records = Counter(
            "aiostream_records_received",
            "Records each input stream put into completed batches (final counts: a stream "
            "decoded on the workers counts the records that decoded).",
            STREAM_LABELS, registry=registry,
        )
        self.scheduling_delay = Histogram(
            "aiostream_batch_scheduling_delay_seconds",
            "Time a batch waited for the scheduler (Spark's scheduling delay).",
            buckets=DELAY_BUCKETS, registry=registry,
        )
        self.processing_time = Histogram(
            "aiostream_batch_processing_time_seconds",
            "Time a batch's jobs took (Spark's processing delay).",
            buckets=DELAY_BUCKETS, registry=registry,
        )
        self.total_delay = Histogram(
            "aiostream_batch_total_delay_seconds",
            "Scheduling delay plus processing time of a batch.",
            buckets=DELAY_BUCKETS, registry=registry,
        )
        self.last_scheduling_delay = Gauge(
            "aiostream_last_batch_scheduling_delay_seconds",
            "Scheduling delay of the newest completed batch.", registry=registry,
        )
        self.last_processing_time = Gauge(
            "aiostream_last_batch_processing_time_seconds",
            "Processing time of the newest completed batch.", registry=registry,
        )
        self.last_total_delay = Gauge(
            "aiostream_last_batch_total_delay_seconds",
            "Total delay of the newest completed batch.", registry=registry,
        )
        self.last_records = Gauge(
            "aiostream_last_batch_records", "Records of the newest completed batch.",
            registry=registry,
        )
        self.loop_lag = Histogram(
            "aiostream_event_loop_lag_seconds",
            "How late the engine's event loop woke a task sleeping 0.1 s.",
            buckets=LAG_BUCKETS, registry=registry,
        )
        view.lag.observe(self.loop_lag.observe)
        registry.register(EngineCollector(view, status, feed))

    def set_inputs(self, names: dict[int, str]) -> None:
        """The graph's input streams: each shows from the start, even at zero records."""
        self._names = dict(names)
        for stream_id, name in self._names.items():
            self.records.labels(str(stream_id), name)

    def on_checkpoint_write_failed(self, event: Any) -> None:
        """``CheckpointWriteFailed`` (durability): one failed attempt to write a file."""
        self.checkpoint_failures.labels(str(getattr(event, "kind", "checkpoint"))).inc()

    def on_batch_completed(self, event: BatchCompleted) -> None:
        info = event.batch_info
        self.batches_completed.inc()
        for stream_id, records in info.stream_id_to_num_records.items():
            name = self._names.get(stream_id, f"stream-{stream_id}")
            self.records.labels(str(stream_id), name).inc(records)
        self.last_records.set(info.num_records)
        for value, histogram, gauge in (
            (info.scheduling_delay, self.scheduling_delay, self.last_scheduling_delay),
            (info.processing_delay, self.processing_time, self.last_processing_time),
            (info.total_delay, self.total_delay, self.last_total_delay),
        ):
            if value is not None:
                histogram.observe(value)
                gauge.set(value)


class EngineCollector(Collector):
    """Reads the engine's own counters at every scrape."""

    def __init__(
        self,
        view: EngineView,
        status: StreamingStatus,
        feed: LiveFeed,
    ) -> None:
        self._view = view
        self._status = status
        self._feed = feed

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        view = self._view
        tasks = view.task_counts()
        for name, doc, value in (
            ("aiostream_tasks_succeeded", "Task attempts that succeeded.", tasks.succeeded),
            ("aiostream_task_failed_attempts", "Task attempts that failed.", tasks.failed_attempts),
            ("aiostream_task_retries", "Task attempts that were retries.", tasks.retries),
            ("aiostream_tasks_failed", "Tasks that failed every attempt (their job failed).",
             tasks.failed),
            ("aiostream_worker_restarts", "Workers lost mid-task and replaced.", tasks.workers_lost),
            ("aiostream_listener_events_dropped", "Listener events dropped (queue full).",
             view.listener_events_dropped()),
            ("aiostream_batches_failed", "Batches with a failed output operation.",
             self._status.total_failed),
        ):
            yield CounterMetricFamily(name, doc, value=value)

        receivers = view.receivers()
        restarts = CounterMetricFamily(
            "aiostream_receiver_restarts", "Times a receiver was restarted.", labels=STREAM_LABELS
        )
        errors = CounterMetricFamily(
            "aiostream_receiver_errors", "Errors a receiver reported.", labels=STREAM_LABELS
        )
        dead = CounterMetricFamily(
            "aiostream_dead_letters", "Records a source could not decode (dead letters).",
            labels=STREAM_LABELS,
        )
        for r in receivers:
            labels = [str(r.stream_id), r.name]
            restarts.add_metric(labels, r.restarts)
            errors.add_metric(labels, r.errors)
        dead_letters = self._status.dead_letters_by_stream
        for stream_id, name in sorted(self._status.input_names.items()):
            dead.add_metric([str(stream_id), name], dead_letters.get(stream_id, 0))
        yield from (restarts, errors, dead)

        active = GaugeMetricFamily(
            "aiostream_receiver_active", "1 while the stream's receiver runs.", labels=STREAM_LABELS
        )
        for stream_id, state in sorted(self._status.receivers.items()):
            active.add_metric([str(stream_id), state.info.name], 1.0 if state.info.active else 0.0)
        yield active

        bounds = GaugeMetricFamily(
            "aiostream_rate_bound_records_per_second",
            "Ingestion bound in force per input stream (backpressure or max rate).",
            labels=STREAM_LABELS,
        )
        for stream_id, bound in sorted(view.rate_bounds().items()):
            bounds.add_metric([str(stream_id), self._status.input_names.get(stream_id, "")], bound)
        yield bounds

        wal_appends = CounterMetricFamily(
            "aiostream_wal_appends", "Blocks written to the write-ahead log.", labels=["stream_id"]
        )
        wal_fsyncs = CounterMetricFamily(
            "aiostream_wal_fsyncs", "fsyncs of the write-ahead log.", labels=["stream_id"]
        )
        wal_bytes = CounterMetricFamily(
            "aiostream_wal_bytes", "Bytes written to the write-ahead log.", labels=["stream_id"]
        )
        for wal in view.wal():
            wal_appends.add_metric([str(wal.stream_id)], wal.appends)
            wal_fsyncs.add_metric([str(wal.stream_id)], wal.fsyncs)
            wal_bytes.add_metric([str(wal.stream_id)], wal.bytes_written)
        yield from (wal_appends, wal_fsyncs, wal_bytes)

        writes = view.checkpoint_writes()
        if writes is not None:
            yield CounterMetricFamily(
                "aiostream_checkpoint_writes", "Checkpoint files written (metadata and state).",
                value=writes,
            )
        seconds = view.checkpoint_write_seconds()
        if seconds is not None:
            yield CounterMetricFamily(
                "aiostream_checkpoint_write_seconds", "Time spent writing checkpoint files.",
                value=seconds,
            )

        keys = GaugeMetricFamily(
            "aiostream_state_keys", "Keys held by each stateful stream.", labels=["state"]
        )
        for name, size in sorted(view.state_sizes().items()):
            keys.add_metric([name], size)
        yield keys

        yield GaugeMetricFamily(
            "aiostream_batches_active", "Batches waiting for or in processing.",
            value=len(self._status.waiting) + len(self._status.running),
        )
        yield GaugeMetricFamily(
            "aiostream_event_loop_lag_last_seconds", "Lag of the newest event-loop probe.",
            value=view.lag.last,
        )
        yield GaugeMetricFamily(
            "aiostream_ui_clients", "Pages following the live feed.", value=self._feed.clients
        )
        yield CounterMetricFamily(
            "aiostream_ui_clients_dropped", "Pages dropped for lagging behind the live feed.",
            value=self._feed.dropped,
        )

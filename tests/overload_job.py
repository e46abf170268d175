"""The overloaded MQTT ingest job of tests/mqtt/test_overload.py (run as a subprocess).

    python overload_job.py <broker port> <postgres dsn> <schema> <checkpoint dir> <budget>

MQTT readings (QoS 1, persistent session, receiver write-ahead log on, keepalive 2 s) pass
through a stage that takes about 0.25 ms per reading (so the job sustains a few thousand
readings a second, well below what is offered), a per-batch count per device and an
inverse-reduced window, and are written to PostgreSQL by the idempotent sink. The
receivers' byte budget is ``<budget>``. It prints ``completed <batch index> <records>`` per
batch and, when its standard input closes, stops gracefully and prints ``stats <json>``:
the budget's limit and peak, how often stores waited on it, the bytes recovered from the
write-ahead log, the receiver's connections,
reading pauses and reported errors, and the process's peak RSS.
"""

from __future__ import annotations

import json
import operator
import resource
import sys
import threading
import time
from typing import Any

from aiostream_engine import StreamingContext, StreamingListener
from aiostream_engine.sinks import PostgresSink

CLIENT_ID = "overload"
TOPICS = "readings/#"
BATCH = 0.5


def slow(readings: Any) -> Any:
    """About 0.25 ms of work per reading: the job's capacity is the test's to choose."""
    for reading in readings:
        time.sleep(0.00025)
        yield reading


def main() -> None:
    port, dsn, schema, checkpoint_dir, budget = sys.argv[1:6]

    def setup() -> StreamingContext:
        ssc = StreamingContext(
            BATCH,
            master="local[2]",
            conf={"receiver_wal_enable": True, "checkpoint_interval": 1.0,
                  "block_interval": 0.1, "receiver_max_pending_bytes": budget},
        )
        stream = ssc.mqtt_stream(
            "127.0.0.1", int(port), TOPICS, qos=1, client_id=CLIENT_ID, clean_start=False,
            keepalive=2, max_block_records=1000,
        )
        readings = stream.map(lambda r: (r.payload["device_id"], r.payload["seq"])).map_partitions(slow)
        readings.write_to(
            PostgresSink(dsn, schema=schema, table="readings", columns=["device_id", "seq"])
        )
        ones = readings.map(lambda kv: (kv[0], 1))
        ones.reduce_by_key(operator.add).write_to(
            PostgresSink(dsn, schema=schema, table="counts", columns=["device_id", "n"])
        )
        ones.reduce_by_key_and_window(operator.add, operator.sub, 2.0, BATCH).foreach_rdd(
            lambda rdd: None
        )
        ssc.checkpoint(checkpoint_dir)
        return ssc

    ssc = StreamingContext.get_or_create(checkpoint_dir, setup)
    errors: list[str] = []

    class Report(StreamingListener):
        def on_batch_completed(self, event):  # type: ignore[no-untyped-def]
            info = event.batch_info
            index = round((info.batch_time - ssc.zero_time) / BATCH)
            print(f"completed {index} {info.num_records}", flush=True)

        def on_receiver_error(self, event):  # type: ignore[no-untyped-def]
            errors.append(event.receiver_info.last_error)

    ssc.add_streaming_listener(Report())
    ssc.start()
    print("started", flush=True)
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    stdin_closed.wait()
    receiver = next(iter(ssc._receiver_tracker.supervisors.values())).receiver
    tracker_budget = ssc._receiver_tracker.budget
    client = receiver.client  # type: ignore[attr-defined]
    stats = {
        "budget_limit": tracker_budget.limit,
        "budget_peak": tracker_budget.peak,
        "budget_waits": tracker_budget.waits,
        "recovered_bytes": tracker_budget.recovered,
        "connections": receiver.connections,  # type: ignore[attr-defined]
        "pauses": receiver.pauses + (client.pauses if client else 0),  # type: ignore[attr-defined]
        "errors": errors,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    ssc.stop(stop_gracefully=True)
    print(f"stats {json.dumps(stats)}", flush=True)


if __name__ == "__main__":
    main()

"""The job of the PostgreSQL outage tests (run as a subprocess).

    python outage_job.py <broker port> <postgres dsn> <schema> <checkpoint dir> <policy>

MQTT readings (QoS 1, persistent session, receiver write-ahead log on) written raw to
``readings`` through the idempotent PostgreSQL sink, which retries a partition once before
its batch fails; ``policy`` is the output_failure_policy. It prints ``completed <batch
index> <records>`` per batch and ``retrying <batch index> <attempt>`` per failed attempt
that will be retried; it stops gracefully when its standard input closes. If the context
stops with an error it prints ``failed <error>`` and exits with status 3.
"""

from __future__ import annotations

import sys
import threading

from aiostream_engine import StreamingContext, StreamingListener
from aiostream_engine.sinks import PostgresSink

CLIENT_ID = "outage-job"
TOPICS = "readings/#"
BATCH = 0.2


def main() -> None:
    port, dsn, schema, checkpoint_dir, policy = sys.argv[1:6]

    def setup() -> StreamingContext:
        ssc = StreamingContext(BATCH, master="local[2]", conf={
            "receiver_wal_enable": True, "checkpoint_interval": 1.0, "block_interval": 0.1,
            "output_failure_policy": policy, "output_retry_backoff": 0.5,
            "output_retry_max_backoff": 1.0, "sink_max_retries": 1, "sink_retry_backoff": 0.2,
        })
        ssc.mqtt_stream(
            "127.0.0.1", int(port), TOPICS, qos=1, client_id=CLIENT_ID, clean_start=False
        ).map(lambda r: (r.payload["device_id"], r.payload["seq"])).write_to(
            PostgresSink(dsn, schema=schema, table="readings", columns=["device_id", "seq"])
        )
        ssc.checkpoint(checkpoint_dir)
        return ssc

    ssc = StreamingContext.get_or_create(checkpoint_dir, setup)

    def index(batch_time: float) -> int:
        return round((batch_time - ssc.zero_time) / BATCH)

    class Report(StreamingListener):
        def on_batch_completed(self, event):  # type: ignore[no-untyped-def]
            info = event.batch_info
            print(f"completed {index(info.batch_time)} {info.num_records}", flush=True)

        def on_output_operation_failed(self, event):  # type: ignore[no-untyped-def]
            if event.retry_in is not None:
                batch = index(event.output_operation_info.batch_time)
                print(f"retrying {batch} {event.attempt}", flush=True)

    ssc.add_streaming_listener(Report())
    ssc.start()
    print("started", flush=True)
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    try:
        while not stdin_closed.is_set():
            if ssc.awaitTermination(0.1):
                break
        ssc.stop(stop_gracefully=True)
    except Exception as error:  # the context stopped with it (output_failure_policy="stop")
        print(f"failed {type(error).__name__}: {error}", flush=True)
        sys.exit(3)
    print("finished", flush=True)


if __name__ == "__main__":
    main()

"""The IoT ingest job of the exactly-once tests (run as a subprocess).

    python iot_job.py <broker port> <postgres dsn> <schema> <checkpoint dir>

MQTT readings (QoS 1, persistent session, receiver write-ahead log on) are written raw to
``readings`` and counted per device per batch into ``counts``, both through the idempotent
PostgreSQL sink. It prints ``completed <batch index> <records>`` per batch and stops
gracefully when its standard input closes.
"""

from __future__ import annotations

import operator
import sys
import threading

from aiostream_engine import StreamingContext, StreamingListener
from aiostream_engine.sinks import PostgresSink

CLIENT_ID = "iot-exactly-once"
TOPICS = "readings/#"
BATCH = 0.2


def main() -> None:
    port, dsn, schema, checkpoint_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

    def setup() -> StreamingContext:
        ssc = StreamingContext(
            BATCH,
            master="local[2]",
            conf={"receiver_wal_enable": True, "checkpoint_interval": 1.0, "block_interval": 0.1},
        )
        readings = ssc.mqtt_stream(
            "127.0.0.1", port, TOPICS, qos=1, client_id=CLIENT_ID, clean_start=False
        ).map(lambda r: (r.payload["device_id"], r.payload["seq"]))
        readings.write_to(
            PostgresSink(dsn, schema=schema, table="readings", columns=["device_id", "seq"])
        )
        readings.map(lambda kv: (kv[0], 1)).reduce_by_key(operator.add).write_to(
            PostgresSink(dsn, schema=schema, table="counts", columns=["device_id", "n"])
        )
        ssc.checkpoint(checkpoint_dir)
        return ssc

    ssc = StreamingContext.get_or_create(checkpoint_dir, setup)

    class Report(StreamingListener):
        def on_batch_completed(self, event):  # type: ignore[no-untyped-def]
            info = event.batch_info
            index = round((info.batch_time - ssc.zero_time) / BATCH)
            print(f"completed {index} {info.num_records}", flush=True)

    ssc.add_streaming_listener(Report())
    ssc.start()
    print("started", flush=True)
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    stdin_closed.wait()
    ssc.stop(stop_gracefully=True)
    print("finished", flush=True)


if __name__ == "__main__":
    main()

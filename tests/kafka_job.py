"""The Kafka exactly-once job of the kill -9 tests (run as a subprocess).

    python kafka_job.py <bootstrap> <topic> <postgres dsn> <schema> <checkpoint dir> <out topic> [receiver]

A direct Kafka stream of JSON readings (checkpointing on; with ``receiver``: the receiver
stream of a consumer group, with the receiver write-ahead log) feeds three outputs:
``readings`` (each reading, idempotent PostgresSink), ``counts`` (readings per device per
tumbling window of two batches, an inverse-reduced window, so its state is checkpointed)
and the output topic (each reading, ``KafkaSink(transactional=True)``). It prints
``completed <batch index> <records>`` per batch and stops gracefully when stdin closes.
"""

from __future__ import annotations

import operator
import sys
import threading

import orjson

from aiostream_engine import StreamingContext, StreamingListener
from aiostream_engine.sinks import KafkaSink, PostgresSink

BATCH = 0.2


def main() -> None:
    bootstrap, topic, dsn, schema, checkpoint_dir, out_topic = sys.argv[1:7]
    receiver = sys.argv[7:] == ["receiver"]

    def setup() -> StreamingContext:
        ssc = StreamingContext(
            BATCH, master="local[2]",
            conf={"kafka_max_rate_per_partition": 1500, "checkpoint_interval": 0.4,
                  "receiver_wal_enable": receiver, "block_interval": 0.1,
                  "receiver_max_rate": 1000},
        )
        params = {"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest",
                  "group.id": f"job-{topic}"}
        if receiver:
            # Static membership: the restarted member replaces the SIGKILLed one at once
            # instead of waiting for its session to expire.
            params["group.instance.id"] = f"job-{topic}-receiver"
            source = ssc.kafka_stream(topic, params, value_decoder=orjson.loads, max_block_records=500)
        else:
            source = ssc.kafka_direct_stream(topic, params, value_decoder=orjson.loads)
        readings = source.map(lambda kv: (kv[1]["device"], kv[1]["seq"]))
        readings.write_to(
            PostgresSink(dsn, schema=schema, table="readings", columns=["device_id", "seq"])
        )
        readings.map(lambda kv: (kv[0], 1)).reduce_by_key_and_window(
            operator.add, operator.sub, 2 * BATCH, 2 * BATCH
        ).filter(lambda kv: kv[1] > 0).write_to(
            PostgresSink(dsn, schema=schema, table="counts", columns=["device_id", "n"])
        )
        readings.write_to(KafkaSink(
            bootstrap, out_topic, transactional=True,
            key=lambda kv: kv[0], value=lambda kv: str(kv[1]),
        ))
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

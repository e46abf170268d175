"""A stateful, windowed streaming job for the recovery tests (run as a subprocess).

    python recovery_job.py <checkpoint dir> <output dir> <last batch index> [variant]

It reads a replayable queue of words, keeps running counts per word (update_state_by_key),
counts words over a sliding window, and writes each batch's results to
``<output dir>/<batch index>.json`` atomically (a re-run batch overwrites). It stops by
itself after the batch with index ``last batch index``. Variants change the code the way
a redeploy would: ``extra_stateless`` adds a stateless operator and an output; ``no_state``
removes the stateful stream.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import threading

from aiostream_engine import StreamingContext, StreamingListener

BATCH = 0.1
WORDS = ["apple", "banana", "cherry", "date", "elder"]


def batches(count: int) -> list[list[str]]:
    """Deterministic input: batch i holds words chosen by i."""
    return [[WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(i % 4 + 1)] for i in range(count)]


def update(new_values: list[int], state: int | None) -> int:
    return (state or 0) + sum(new_values)


def main() -> None:
    checkpoint_dir, output_dir, last_index = sys.argv[1], sys.argv[2], int(sys.argv[3])
    variant = sys.argv[4] if len(sys.argv) > 4 else "base"
    os.makedirs(output_dir, exist_ok=True)
    done = threading.Event()

    def write(name: str):  # type: ignore[no-untyped-def]
        def save(time: float, rdd):  # type: ignore[no-untyped-def]
            index = round((time - ssc.zero_time) / BATCH)
            path = os.path.join(output_dir, f"{index:04d}.{name}.json")
            with open(path + ".tmp", "w") as out:
                json.dump(sorted(rdd.collect()), out)
            os.replace(path + ".tmp", path)

        return save

    class StopAfterLast(StreamingListener):
        def on_batch_completed(self, event):  # type: ignore[no-untyped-def]
            index = round((event.batch_info.batch_time - ssc.zero_time) / BATCH)
            print(f"completed {index}", flush=True)
            if index >= last_index:
                done.set()

    def setup() -> StreamingContext:
        context = StreamingContext(
            BATCH, master="local[2]", conf={"checkpoint_interval": 0.5, "block_interval": 0.05}
        )
        pairs = context.queue_stream(batches(last_index + 5)).map(lambda w: (w, 1))
        if variant != "no_state":
            pairs.update_state_by_key(update).foreach_rdd(write("state"))
        pairs.reduce_by_key_and_window(operator.add, operator.sub, 0.3, 0.1).foreach_rdd(
            write("window")
        )
        if variant == "extra_stateless":
            pairs.map(lambda kv: (kv[0].upper(), kv[1])).reduce_by_key(operator.add).foreach_rdd(
                write("upper")
            )
        context.checkpoint(checkpoint_dir)
        return context

    ssc = StreamingContext.get_or_create(checkpoint_dir, setup)
    ssc.add_streaming_listener(StopAfterLast())
    ssc.start()
    done.wait(120)
    ssc.stop(stop_gracefully=True)
    print("finished", flush=True)


if __name__ == "__main__":
    main()

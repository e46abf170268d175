"""Word counts that survive a restart, with a broadcast list of words to leave out and an
accumulator of the words left out (Spark's recoverable network word count).

    python examples/pyspark_port/recoverable_network_wordcount.py \\
        localhost 9999 <checkpoint directory> <output file> [seconds]

Restart it with the same checkpoint directory and it carries on where it stopped. One
difference from PySpark: ``getOrCreate`` calls ``create_context`` on a restart too (the
graph is rebuilt from the code, so compatible code changes keep their state), so the
function keeps its side effects repeatable: it appends to the output file, never
truncates it, and gets the broadcast and accumulator lazily, once per process.
"""

import os
import sys

from aiostream_engine.pyspark import SparkContext
from aiostream_engine.pyspark.streaming import StreamingContext

_excluded = None
_dropped = None


def excluded_words(sc):
    """The broadcast of the words to leave out, made on first use (after a restart too)."""
    global _excluded
    if _excluded is None:
        _excluded = sc.broadcast(["a", "b", "c"])
    return _excluded


def dropped_words(sc):
    """The accumulator of the words left out."""
    global _dropped
    if _dropped is None:
        _dropped = sc.accumulator(0)
    return _dropped


def create_context(host, port, output_path, checkpoint):
    print("Creating new context")  # on a restart too: see the module docstring
    sc = SparkContext.getOrCreate()
    ssc = StreamingContext(sc, 1)
    ssc.checkpoint(checkpoint)

    lines = ssc.socketTextStream(host, port)
    words = lines.flatMap(lambda line: line.split(" "))
    counts = words.map(lambda word: (word, 1)).reduceByKey(lambda x, y: x + y)

    def echo(time, rdd):
        excluded = excluded_words(rdd.context)
        dropped = dropped_words(rdd.context)

        def keep(word_count):
            if word_count[0] in excluded.value:
                dropped.add(word_count[1])
                return False
            return True

        counted = f"Counts at time {time} {rdd.filter(keep).collect()}"
        print(counted)
        print(f"Dropped {dropped.value} word(s) totally")
        print("Appending to " + os.path.abspath(output_path))
        with open(output_path, "a") as out:
            out.write(counted + "\n")

    counts.foreachRDD(echo)
    return ssc


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        print(
            "Usage: recoverable_network_wordcount.py <hostname> <port> <checkpoint-directory> "
            "<output-file> [seconds]",
            file=sys.stderr,
        )
        sys.exit(-1)
    host, port, checkpoint, output = sys.argv[1:5]
    SparkContext(appName="PythonStreamingRecoverableNetworkWordCount")
    ssc = StreamingContext.getOrCreate(
        checkpoint, lambda: create_context(host, int(port), output, checkpoint)
    )
    ssc.start()
    if len(sys.argv) == 6:
        ssc.awaitTermination(float(sys.argv[5]))
        ssc.stop(stopGraceFully=True)
    else:
        ssc.awaitTermination()

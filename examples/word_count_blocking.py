"""Word count, PySpark style: a plain blocking script, no async, camelCase names.

This is how a ported PySpark DStream job looks: the engine runs its event loop in a
background thread, ``awaitTermination`` blocks, and a plain ``foreachRDD`` function may
call blocking actions such as ``rdd.collect()``.

    python examples/word_count_blocking.py
"""

from datetime import datetime
from operator import add

from aiostream_engine import StreamingContext

LINES = [
    ["the quick brown fox", "jumps over the lazy dog"],
    ["the dog barks", "the fox runs"],
    ["a quick dog", "a lazy fox"],
]

ssc = StreamingContext(1.0, master="local[2]")
lines = ssc.queueStream([ssc.sparkContext.parallelize(batch, 2) for batch in LINES])
counts = lines.flatMap(lambda line: line.split()).map(lambda w: (w, 1)).reduceByKey(add)
counts.pprint(5)


def top_words(time, rdd):
    top = sorted(rdd.collect(), key=lambda kv: (-kv[1], kv[0]))[:3]
    print(f"top words at {datetime.fromtimestamp(time):%H:%M:%S}: {top}")


counts.foreachRDD(top_words)

ssc.start()
ssc.awaitTermination(4)
ssc.stop()

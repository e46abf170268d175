"""Running word counts over everything a TCP server has sent, starting from an initial
state (Spark's stateful network word count: updateStateByKey with an initial RDD).

    python examples/pyspark_port/stateful_network_wordcount.py localhost 9999 [seconds]
"""

import sys
import tempfile

from aiostream_engine.pyspark import SparkContext
from aiostream_engine.pyspark.streaming import StreamingContext

if len(sys.argv) not in (3, 4):
    print("Usage: stateful_network_wordcount.py <hostname> <port> [seconds]", file=sys.stderr)
    sys.exit(-1)

sc = SparkContext(appName="PythonStreamingStatefulNetworkWordCount")
ssc = StreamingContext(sc, 1)
ssc.checkpoint(tempfile.mkdtemp(prefix="stateful-wordcount-"))

# the counts start from these
initial_state = sc.parallelize([("hello", 1), ("world", 1)])


def update(new_values, last_sum):
    return sum(new_values) + (last_sum or 0)


lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
running_counts = (
    lines.flatMap(lambda line: line.split(" "))
    .map(lambda word: (word, 1))
    .updateStateByKey(update, initialRDD=initial_state)
)
running_counts.pprint()

ssc.start()
if len(sys.argv) == 4:
    ssc.awaitTermination(float(sys.argv[3]))
    ssc.stop(stopGraceFully=True)
else:
    ssc.awaitTermination()

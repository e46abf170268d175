"""Word counts of the lines a TCP server sends, every second (Spark's network word count).

Run a server first, e.g. ``nc -lk 9999``, then::

    python examples/pyspark_port/network_wordcount.py localhost 9999 [seconds]

Only the imports differ from the PySpark program.
"""

import sys
from operator import add

from aiostream_engine.pyspark import SparkContext
from aiostream_engine.pyspark.streaming import StreamingContext

if len(sys.argv) not in (3, 4):
    print("Usage: network_wordcount.py <hostname> <port> [seconds]", file=sys.stderr)
    sys.exit(-1)

sc = SparkContext(appName="PythonStreamingNetworkWordCount")
ssc = StreamingContext(sc, 1)

lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
counts = lines.flatMap(lambda line: line.split(" ")).map(lambda word: (word, 1)).reduceByKey(add)
counts.pprint()

ssc.start()
if len(sys.argv) == 4:  # for a bounded run (the tests): stop after that many seconds
    ssc.awaitTermination(float(sys.argv[3]))
    ssc.stop(stopGraceFully=True)
else:
    ssc.awaitTermination()

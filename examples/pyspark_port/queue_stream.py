"""A stream made from a queue of RDDs, one RDD per second (Spark's queue stream example).

    python examples/pyspark_port/queue_stream.py [number of RDDs, default 5]
"""

import sys
import time

from aiostream_engine.pyspark import SparkContext
from aiostream_engine.pyspark.streaming import StreamingContext

count = int(sys.argv[1]) if len(sys.argv) > 1 else 5

sc = SparkContext(appName="PythonStreamingQueueStream")
ssc = StreamingContext(sc, 1)

# the RDDs the stream will read, one per batch
rdd_queue = [sc.parallelize(range(1, 1001), 10) for _ in range(count)]

stream = ssc.queueStream(rdd_queue)
mapped = stream.map(lambda x: (x % 10, 1))
reduced = mapped.reduceByKey(lambda a, b: a + b)
reduced.pprint()

ssc.start()
time.sleep(count + 1)
ssc.stop(stopSparkContext=True, stopGraceFully=True)

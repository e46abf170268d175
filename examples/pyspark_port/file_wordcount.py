"""Word counts of the text files moved into a directory, every second (Spark's HDFS word
count, on a local directory).

    python examples/pyspark_port/file_wordcount.py <directory> [seconds]
"""

import sys
from operator import add

from aiostream_engine.pyspark import SparkContext
from aiostream_engine.pyspark.streaming import StreamingContext

if len(sys.argv) not in (2, 3):
    print("Usage: file_wordcount.py <directory> [seconds]", file=sys.stderr)
    sys.exit(-1)

sc = SparkContext(appName="PythonStreamingFileWordCount")
ssc = StreamingContext(sc, 1)

lines = ssc.textFileStream(sys.argv[1])
counts = lines.flatMap(lambda line: line.split(" ")).map(lambda x: (x, 1)).reduceByKey(add)
counts.pprint()

ssc.start()
if len(sys.argv) == 3:
    ssc.awaitTermination(float(sys.argv[2]))
    ssc.stop(stopGraceFully=True)
else:
    ssc.awaitTermination()

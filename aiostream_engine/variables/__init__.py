"""Spark's shared variables: broadcasts (a read-only value shipped to tasks) and
accumulators (tasks add, the driver reads), working wherever tasks run."""

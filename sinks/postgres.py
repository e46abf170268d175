"""PostgresSink: each partition in one transaction, idempotent by (batch time, partition).

Writes go through one asyncpg pool per sink (``pool_size`` connections at most, opened on
first use, kept across batches). A partition is written in one transaction that first
inserts a marker row ``(sink name, batch time, partition)`` into the marker table:

* the marker is already there: the partition was committed before (a retried or recovered
  batch), so the transaction writes nothing; the table stays as if written once;
* otherwise the rows follow (``COPY`` or batched ``INSERT`` for append tables,
  ``INSERT ... ON CONFLICT (key) DO UPDATE`` for upserts) and commit with the marker, so
  rows and marker exist together or not at all. A failure half way leaves neither.

The marker insert also serializes concurrent writers of the same partition: the second
waits on the first's uncommitted key, then finds it and skips. For upsert tables it is
what keeps an old batch replayed after a newer one from overwriting newer values; for
append tables it is the only thing that prevents duplicates. Markers older than
``marker_retention`` seconds (before the batch being written) are deleted with partition
0 of each batch, so the marker table stays small; a batch replayed after that long is
written again.

Kafka offsets with the results (``store_offsets=True``): for an output that is a narrow
transformation of a direct Kafka stream (map, filter, flat_map: output partition i holds
what Kafka partition i's range gave), each partition's transaction also upserts that
range's end into ``offsets_table`` under the sink's name. ``PostgresSink.stored_offsets(dsn,
job)`` reads them back as ``from_offsets`` for a restart that resumes from the sink itself,
without a checkpoint: every Kafka record's results are committed exactly once, together
with the offset after it. An output whose partitions mix Kafka partitions (a shuffle, a
window, a union) is refused when its first batch is written; aggregated outputs get
exactly once from checkpointing and the (batch time, partition) markers instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .base import Sink, batch_ms

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the PostgreSQL sink needs asyncpg: pip install 'aiostream-engine[postgres]'"
    ) from exc

AppendMethod = Literal["copy", "insert"]
RowFunction = Callable[[Any], Sequence[Any]]


def quote_identifier(name: str) -> str:
    """A SQL identifier, quoted (case and any character kept)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass
class PostgresSinkStatistics:
    connections_opened: int = 0
    partitions_written: int = 0
    partitions_skipped: int = 0
    rows_written: int = 0


class PostgresSink(Sink):
    """Appends (``key=None``) or upserts on ``key`` into ``schema.table (columns)``.

    Records become rows with ``row(record)``; by default a mapping gives
    ``record[column]`` for each column, a tuple or list is the row itself, and any other
    object gives its attributes. ``name`` identifies the sink in the marker table: two
    outputs writing different data to one table need different names.
    ``connect_options`` go to ``asyncpg.create_pool`` (user, password, ssl, ...).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        table: str,
        columns: Sequence[str],
        schema: str | None = None,
        key: str | Sequence[str] | None = None,
        row: RowFunction | None = None,
        method: AppendMethod = "copy",
        name: str | None = None,
        marker_table: str = "aiostream_sink_markers",
        marker_retention: float | None = 7 * 24 * 3600.0,
        pool_size: int = 4,
        store_offsets: bool = False,
        offsets_table: str = "aiostream_kafka_offsets",
        **connect_options: Any,
    ) -> None:
        if not columns:
            raise ValueError("PostgresSink needs the table's columns")
        keys = [key] if isinstance(key, str) else list(key or [])
        if missing := [k for k in keys if k not in columns]:
            raise ValueError(f"upsert key column(s) {missing} are not among the columns")
        if method not in ("copy", "insert"):
            raise ValueError(f"method must be 'copy' or 'insert', got {method!r}")
        self.dsn = dsn
        self.table = table
        self.schema = schema
        self.columns = list(columns)
        self.key = keys
        self.row = row
        self.method = method
        self._name = name or f"postgres:{schema + '.' if schema else ''}{table}"
        self.marker_table = marker_table
        self.marker_retention = marker_retention
        self.pool_size = pool_size
        self.store_offsets = store_offsets
        self.offsets_table = offsets_table
        self.connect_options = connect_options
        self._batch_ranges: dict[int, list[Any]] = {}
        self.statistics = PostgresSinkStatistics()
        self._pool: asyncpg.Pool | None = None
        self._sql = _Statements(self)

    @property
    def name(self) -> str:
        return self._name

    @property
    def pool(self) -> asyncpg.Pool:
        """The sink's connection pool (once open)."""
        if self._pool is None:
            raise RuntimeError(f"sink {self.name} is not open")
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            init=self._connection_opened,
            **self.connect_options,
        )
        async with self._pool.acquire() as conn:
            await conn.execute(self._sql.create_markers)
            if self.store_offsets:
                await conn.execute(self._sql.create_offsets)

    async def _connection_opened(self, connection: asyncpg.Connection) -> None:
        """asyncpg calls this once for every new physical connection of the pool."""
        self.statistics.connections_opened += 1

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def begin_batch(self, batch_time: float, rdd: Any) -> None:
        if self.store_offsets:
            from aiostream_engine.sources.kafka import partition_offset_ranges

            self._batch_ranges[batch_ms(batch_time)] = partition_offset_ranges(rdd, f"sink {self.name}")

    def end_batch(self, batch_time: float) -> None:
        self._batch_ranges.pop(batch_ms(batch_time), None)

    async def write_partition(
        self, batch_time: float, partition_index: int, records: Sequence[Any]
    ) -> None:
        time_ms = batch_ms(batch_time)
        offsets = None
        if self.store_offsets:
            ranges = self._batch_ranges.get(time_ms)
            if ranges is None:
                raise RuntimeError(
                    f"sink {self.name}: store_offsets=True needs the batch's Kafka offset ranges; "
                    "write through stream.write_to(sink)"
                )
            offsets = ranges[partition_index]
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(self._sql.insert_marker, self.name, time_ms, partition_index)
            if fresh is None:
                self.statistics.partitions_skipped += 1
                return
            if partition_index == 0 and self.marker_retention is not None:
                horizon = time_ms - round(self.marker_retention * 1000)
                await conn.execute(self._sql.expire_markers, self.name, horizon)
            rows = map(self._row_function(), records)
            if self.key or self.method == "insert":
                await conn.executemany(self._sql.write_rows, rows)
            else:
                await conn.copy_records_to_table(
                    self.table, records=rows, columns=self.columns, schema_name=self.schema
                )
            if offsets is not None:
                await conn.execute(
                    self._sql.store_offset, self.name, offsets.topic, offsets.partition,
                    offsets.until_offset, time_ms,
                )
        self.statistics.partitions_written += 1
        self.statistics.rows_written += len(records)

    @staticmethod
    async def stored_offsets(
        dsn: str | None,
        job: str,
        *,
        schema: str | None = None,
        offsets_table: str = "aiostream_kafka_offsets",
        **connect_options: Any,
    ) -> dict[Any, int]:
        """The offsets a ``store_offsets=True`` sink named ``job`` stored, per partition
        (``TopicAndPartition``): the next offset to read, for ``from_offsets=``. Empty when
        it stored none (or the table does not exist yet)."""
        from aiostream_engine.sources.kafka_types import TopicAndPartition

        prefix = f"{quote_identifier(schema)}." if schema else ""
        table = prefix + quote_identifier(offsets_table)
        conn = await asyncpg.connect(dsn, **connect_options)
        try:
            rows = await conn.fetch(
                f"SELECT topic, partition, until_offset FROM {table} WHERE job = $1", job
            )
        except asyncpg.UndefinedTableError:
            return {}
        finally:
            await conn.close()
        return {TopicAndPartition(r["topic"], r["partition"]): r["until_offset"] for r in rows}

    def _row_function(self) -> RowFunction:
        if self.row is not None:
            return self.row
        columns = self.columns

        def row(record: Any) -> Sequence[Any]:
            if isinstance(record, Mapping):
                return [record[c] for c in columns]
            if isinstance(record, tuple | list):
                return record
            return [getattr(record, c) for c in columns]

        return row


class _Statements:
    """The SQL a sink runs, built once from its table, columns and key."""

    def __init__(self, sink: PostgresSink) -> None:
        prefix = f"{quote_identifier(sink.schema)}." if sink.schema else ""
        table = prefix + quote_identifier(sink.table)
        markers = prefix + quote_identifier(sink.marker_table)
        offsets = prefix + quote_identifier(sink.offsets_table)
        columns = [quote_identifier(c) for c in sink.columns]
        values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"
        self.write_rows = insert + _on_conflict(sink.key, sink.columns)
        self.create_markers = (
            f"CREATE TABLE IF NOT EXISTS {markers} ("
            "sink text NOT NULL, batch_time_ms bigint NOT NULL, partition integer NOT NULL, "
            "written_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (sink, batch_time_ms, partition))"
        )
        self.insert_marker = (
            f"INSERT INTO {markers} (sink, batch_time_ms, partition) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        )
        self.expire_markers = f"DELETE FROM {markers} WHERE sink = $1 AND batch_time_ms < $2"
        self.create_offsets = (
            f"CREATE TABLE IF NOT EXISTS {offsets} ("
            "job text NOT NULL, topic text NOT NULL, partition integer NOT NULL, "
            "until_offset bigint NOT NULL, batch_time_ms bigint NOT NULL, "
            "PRIMARY KEY (job, topic, partition))"
        )
        self.store_offset = (
            f"INSERT INTO {offsets} (job, topic, partition, until_offset, batch_time_ms) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job, topic, partition) DO UPDATE SET "
            "until_offset = EXCLUDED.until_offset, batch_time_ms = EXCLUDED.batch_time_ms"
        )


def _on_conflict(key: Iterable[str], columns: Sequence[str]) -> str:
    key = list(key)
    if not key:
        return ""
    target = ", ".join(quote_identifier(k) for k in key)
    updates = [quote_identifier(c) for c in columns if c not in key]
    if not updates:
        return f" ON CONFLICT ({target}) DO NOTHING"
    assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in updates)
    return f" ON CONFLICT ({target}) DO UPDATE SET {assignments}"

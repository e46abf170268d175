"""Driver side of the direct Kafka stream: partitions, offsets and the group's commits.

The driver never reads records. At each batch it asks for the partitions of its topics
(new ones are picked up) and their latest offsets (``ListOffsets``), and commits what the
program hands to ``commit_async``. It holds two clients for the whole run: an admin client
(topic metadata, the group's committed offsets) and a consumer that never fetches (offset
look-ups; with a ``group.id`` it commits for the group: aiokafka commits only for assigned
partitions, so the stream's partitions are assigned to it and paused at once).

Connecting is bounded: ``connect_attempts`` tries with doubling delays, then a clear error
naming the bootstrap servers; it never hangs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from aiostream_engine.errors import StreamingError
from aiostream_engine.sources.kafka_params import ClientSettings
from aiostream_engine.sources.kafka_types import TopicAndPartition

log = logging.getLogger("aiostream_engine.kafka")


class KafkaUnavailableError(StreamingError):
    """The cluster could not be reached."""


class KafkaTopicMissingError(StreamingError):
    """A topic the stream reads does not exist."""


def _tp(p: TopicAndPartition) -> TopicPartition:
    return TopicPartition(p.topic, p.partition)


def _ours(tp: TopicPartition) -> TopicAndPartition:
    return TopicAndPartition(tp.topic, tp.partition)


class KafkaOffsets:
    """What the driver asks the cluster; one instance per stream, started and stopped with it."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        connect_attempts: int = 5,
        retry_backoff: float = 0.2,
        request_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.connect_attempts = connect_attempts
        self.retry_backoff = retry_backoff
        self.request_timeout = request_timeout
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()

    async def start(self) -> None:
        last: BaseException | None = None
        delay = self.retry_backoff
        for attempt in range(self.connect_attempts):
            try:
                with anyio.fail_after(self.request_timeout):
                    await self._connect()
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                last = exc
                await self.stop()
                if attempt + 1 < self.connect_attempts:
                    log.info("Kafka at %s unreachable (%s); retrying in %.1f s",
                             self.settings.bootstrap_servers, exc, delay)
                    await anyio.sleep(delay)
                    delay *= 2
        raise KafkaUnavailableError(
            f"cannot reach Kafka at {self.settings.bootstrap_servers} after "
            f"{self.connect_attempts} attempts: {type(last).__name__}: {last}"
        )

    async def _connect(self) -> None:
        timeout_ms = round(self.request_timeout * 1000)
        self._admin = AIOKafkaAdminClient(**self.settings.client_kwargs(request_timeout_ms=timeout_ms))
        await self._admin.start()
        self._consumer = AIOKafkaConsumer(**self.settings.consumer_kwargs(
            group_id=self.settings.group_id, enable_auto_commit=False,
            # Never used to fetch (its partitions are paused); only position look-ups.
            auto_offset_reset="earliest",
            request_timeout_ms=timeout_ms,
        ))
        await self._consumer.start()
        self._assigned = set()

    async def stop(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        with anyio.CancelScope(shield=True):
            for client in (consumer, admin):
                if client is None:
                    continue
                try:
                    await (client.close() if client is admin else client.stop())  # type: ignore[union-attr]
                except Exception as exc:  # closing a broken client: log, never mask the cause
                    log.debug("closing a Kafka client: %s", exc)

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise StreamingError("the Kafka offsets client is not started")
        return self._consumer

    @property
    def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise StreamingError("the Kafka offsets client is not started")
        return self._admin

    # ---- look-ups -----------------------------------------------------------------------

    async def partitions(self, topics: Iterable[str]) -> list[TopicAndPartition]:
        """Every partition of ``topics``, from fresh metadata (new partitions included)."""
        wanted = list(dict.fromkeys(topics))
        with anyio.fail_after(self.request_timeout):
            described = await self.admin.describe_topics()  # all topics: never auto-creates
        found = {t["topic"]: t for t in described}
        missing = [t for t in wanted if t not in found or found[t]["error_code"] == 3]
        if missing:
            raise KafkaTopicMissingError(
                f"Kafka topic(s) {', '.join(map(repr, missing))} do not exist on "
                f"{self.settings.bootstrap_servers}"
            )
        return sorted(
            TopicAndPartition(t, p["partition"]) for t in wanted for p in found[t]["partitions"]
        )

    async def latest(self, partitions: Iterable[TopicAndPartition]) -> dict[TopicAndPartition, int]:
        """The offset after the last record (the last stable offset with read_committed)."""
        with anyio.fail_after(self.request_timeout):
            found = await self.consumer.end_offsets([_tp(p) for p in partitions])
        return {_ours(tp): offset for tp, offset in found.items()}

    async def earliest(self, partitions: Iterable[TopicAndPartition]) -> dict[TopicAndPartition, int]:
        """The first offset still on the broker (the log start)."""
        with anyio.fail_after(self.request_timeout):
            found = await self.consumer.beginning_offsets([_tp(p) for p in partitions])
        return {_ours(tp): offset for tp, offset in found.items()}

    async def committed(self, partitions: Iterable[TopicAndPartition]) -> dict[TopicAndPartition, int]:
        """The group's committed offsets (partitions without one are left out)."""
        group = self.settings.group_id
        if group is None:
            return {}
        with anyio.fail_after(self.request_timeout):
            found = await self.admin.list_consumer_group_offsets(
                group, partitions=[_tp(p) for p in partitions]
            )
        return {_ours(tp): meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def commit(self, offsets: Mapping[TopicAndPartition, int]) -> None:
        """Commit ``offsets`` (the next offset to read, per partition) for the group."""
        if not offsets:
            return
        wanted = {_tp(p) for p in offsets}
        consumer = self.consumer
        if not wanted <= self._assigned:
            self._assigned |= wanted
            consumer.assign(sorted(self._assigned))
            consumer.pause(*self._assigned)
        with anyio.fail_after(self.request_timeout):
            await consumer.commit({_tp(p): offset for p, offset in offsets.items()})

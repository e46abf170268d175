"""MqttSink: publishes each record to a topic formatted from the record (aiomqtt).

One client per sink, connected on first use and reused by every partition write and every
batch. A partition's messages are published concurrently: paho keeps up to
``max_inflight`` QoS>0 messages unacknowledged on the wire and queues the rest, and each
``publish`` returns once the broker acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2),
so a partition write returns only when every message of it is with the broker.

MQTT has no transactions: a partition that fails half way is published again whole by the
retry, so with QoS 1 a subscriber may see a message twice (at least once, as QoS 1 itself
promises). A lost connection fails the attempt; the next attempt connects again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import orjson

from .base import Sink

try:
    import aiomqtt
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the MQTT sink needs aiomqtt: pip install 'aiostream-engine[mqtt]'"
    ) from exc

Topic = str | Callable[[Any], str]
Payload = Callable[[Any], bytes | str]


class _Attributes(Mapping[str, Any]):
    """Lets ``str.format_map`` read an object's attributes (dataclasses, records)."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self._obj, key)
        except AttributeError:
            raise KeyError(key) from None

    def __iter__(self) -> Any:
        return iter(vars(self._obj))

    def __len__(self) -> int:
        return len(vars(self._obj))


def format_topic(template: str, record: Any) -> str:
    """``"alerts/{device_id}"`` from a mapping's keys or an object's attributes;
    ``"alerts/{0}"`` from a tuple's items (a (key, value) pair)."""
    if isinstance(record, Mapping):
        return template.format_map(record)
    if isinstance(record, tuple):
        return template.format(*record)
    return template.format_map(_Attributes(record))


def json_payload(record: Any) -> bytes:
    """The default payload: bytes as they are, everything else as JSON (orjson)."""
    if isinstance(record, bytes | bytearray):
        return bytes(record)
    return orjson.dumps(record)


class MqttSink(Sink):
    """Publishes every record: ``topic`` is a template (see ``format_topic``) or a function
    of the record, ``payload`` turns a record into the message body."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        topic: Topic,
        qos: int = 1,
        retain: bool = False,
        payload: Payload = json_payload,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        max_inflight: int = 100,
        timeout: float = 10.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        self.host = host
        self.port = port
        self.topic = topic
        self.qos = qos
        self.retain = retain
        self.payload = payload
        self.client_id = client_id
        self.username = username
        self.password = password
        self.max_inflight = max_inflight
        self.timeout = timeout
        self.client_options = dict(client_options or {})
        self._client: aiomqtt.Client | None = None
        self._connect_lock: anyio.Lock | None = None
        self.connections_opened = 0
        self.messages_published = 0

    @property
    def name(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def topic_of(self, record: Any) -> str:
        """The topic ``record`` is published to (the template filled in, or the function's
        answer)."""
        return self.topic(record) if callable(self.topic) else format_topic(self.topic, record)

    async def open(self) -> None:
        self._connect_lock = anyio.Lock()
        await self._connected()

    async def _connected(self) -> aiomqtt.Client:
        """The sink's client, connecting it first if it is not (first use, or after a
        failed attempt dropped it)."""
        assert self._connect_lock is not None
        async with self._connect_lock:
            if self._client is None:
                client = aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    username=self.username,
                    password=self.password,
                    max_inflight_messages=self.max_inflight,
                    timeout=self.timeout,
                    **self.client_options,
                )
                await client.__aenter__()
                self.connections_opened += 1
                self._client = client
            return self._client

    async def write_partition(
        self, batch_time: float, partition_index: int, records: Sequence[Any]
    ) -> None:
        if not records:
            return
        messages = iter([(self.topic_of(r), self.payload(r)) for r in records])
        client = await self._connected()
        errors: list[Exception] = []

        async def lane() -> None:
            # max_inflight lanes: paho's window is kept full and nothing queues behind it.
            for topic, body in messages:
                if errors:
                    return
                try:
                    await client.publish(topic, body, qos=self.qos, retain=self.retain)
                except Exception as exc:  # a lost connection fails every lane; keep one
                    errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.max_inflight, len(records))):
                tg.start_soon(lane)
        if errors:
            await self._drop(client)
            raise errors[0]
        self.messages_published += len(records)

    async def _drop(self, client: aiomqtt.Client) -> None:
        """Forget a client after a failed write, so the retry starts on a fresh connection."""
        if self._client is client:
            self._client = None
            with anyio.CancelScope(shield=True):
                await _disconnect(client)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _disconnect(client)


async def _disconnect(client: aiomqtt.Client) -> None:
    try:
        with anyio.move_on_after(5):
            await client.__aexit__(None, None, None)
    except aiomqtt.MqttError:  # already gone; nothing left to release
        pass

"""Kafka's own configuration keys, turned into aiokafka's keyword arguments.

Users write ``kafka_params`` as they would for any Kafka client (and as Spark's Kafka
integration takes them): ``bootstrap.servers`` (or the old ``metadata.broker.list``),
``group.id``, ``auto.offset.reset`` (earliest/latest, or the old smallest/largest),
``isolation.level``, the security keys (``security.protocol``, ``sasl.mechanism``,
``sasl.username`` / ``sasl.password``, ``ssl.ca.location``, ``ssl.certificate.location``,
``ssl.key.location``, ``ssl.key.password``) and any other key that names an aiokafka
argument once its dots become underscores (``fetch.max.bytes``, ``request.timeout.ms``).
A key that is none of these is refused by name: a typo must not be ignored.

The result is plain picklable data (``ClientSettings``): worker processes build their own
clients (and TLS contexts, from the certificate paths) from it, and a worker caches one
consumer per distinct settings.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiostream_engine.errors import ConfigurationError

try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("Kafka needs aiokafka: pip install 'aiostream-engine[kafka]'") from exc

#: auto.offset.reset values, Kafka's and the 0.8 client's (Spark 1.x/2.x PySpark) spellings.
RESETS = {"earliest": "earliest", "smallest": "earliest", "latest": "latest", "largest": "latest",
          "none": "none"}

_RENAMED = {
    "bootstrap.servers": "bootstrap_servers",
    "metadata.broker.list": "bootstrap_servers",
    "group.id": "group_id",
    "client.id": "client_id",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "sasl.mechanisms": "sasl_mechanism",
}
_TLS = {
    "ssl.ca.location": "cafile",
    "ssl.certificate.location": "certfile",
    "ssl.key.location": "keyfile",
    "ssl.key.password": "password",
}
#: Keys the engine decides itself: offsets are the stream's business, records are decoded
#: by the stream's decoders.
_REFUSED = {
    "enable.auto.commit": "the direct stream commits only through commit_async",
    "key.deserializer": "pass key_decoder= to the stream",
    "value.deserializer": "pass value_decoder= to the stream",
}
_CONSUMER_ARGS = set(inspect.signature(AIOKafkaConsumer.__init__).parameters) - {"self", "loop", "topics"}
_PRODUCER_ARGS = set(inspect.signature(AIOKafkaProducer.__init__).parameters) - {"self", "loop"}
#: Arguments that every client (consumer, producer, admin) takes.
_COMMON = {
    "bootstrap_servers", "client_id", "request_timeout_ms", "retry_backoff_ms",
    "metadata_max_age_ms", "security_protocol", "api_version", "connections_max_idle_ms",
    "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "sasl_kerberos_service_name", "sasl_kerberos_domain_name",
}


@dataclass(frozen=True)
class ClientSettings:
    """What a client needs to reach the cluster, plus the consumer's own arguments.

    Hashable and picklable: ``items`` are (aiokafka argument, value) pairs, sorted."""

    common: tuple[tuple[str, Any], ...]
    consumer: tuple[tuple[str, Any], ...] = ()
    producer: tuple[tuple[str, Any], ...] = ()
    tls: tuple[tuple[str, str], ...] = ()
    group_id: str | None = None
    auto_offset_reset: str | None = None  # as given (None: not given; Kafka's default is latest)

    @property
    def bootstrap_servers(self) -> str:
        return str(dict(self.common)["bootstrap_servers"])

    @property
    def isolation_level(self) -> str:
        return str(dict(self.consumer).get("isolation_level", "read_uncommitted"))

    def _tls_context(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        return {"ssl_context": create_ssl_context(**dict(self.tls))}

    def client_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """For an admin client."""
        return {**dict(self.common), **self._tls_context(), **overrides}

    def consumer_kwargs(self, **overrides: Any) -> dict[str, Any]:
        return {**dict(self.common), **dict(self.consumer), **self._tls_context(), **overrides}

    def producer_kwargs(self, **overrides: Any) -> dict[str, Any]:
        return {**dict(self.common), **dict(self.producer), **self._tls_context(), **overrides}


def parse_kafka_params(params: Mapping[str, Any], *, for_what: str = "kafka") -> ClientSettings:
    """``ClientSettings`` from Kafka-style keys (aiokafka's own names are accepted too)."""
    common: dict[str, Any] = {}
    consumer: dict[str, Any] = {}
    producer: dict[str, Any] = {}
    tls: dict[str, str] = {}
    group_id: str | None = None
    reset: str | None = None
    for key, value in params.items():
        if key in _REFUSED:
            raise ConfigurationError(f"{for_what}: {key!r} cannot be set: {_REFUSED[key]}")
        if key == "ssl_context" or key == "ssl.context":
            raise ConfigurationError(
                f"{for_what}: give TLS as file paths (ssl.ca.location, ssl.certificate.location, "
                "ssl.key.location, ssl.key.password): workers build their own TLS context"
            )
        if key in _TLS:
            tls[_TLS[key]] = str(value)
            continue
        if key in ("auto.offset.reset", "auto_offset_reset"):
            text = str(value).lower()
            if text not in RESETS:
                raise ConfigurationError(
                    f"{for_what}: auto.offset.reset must be one of {sorted(RESETS)}, got {value!r}"
                )
            reset = text
            continue
        name = _RENAMED.get(key, key.replace(".", "_"))
        if name == "group_id":
            group_id = str(value)
            continue
        if name == "bootstrap_servers" and not isinstance(value, str):
            value = ",".join(value)
        if name == "security_protocol" or name == "sasl_mechanism":
            value = str(value).upper()
        if name in _COMMON:
            common[name] = value
        elif name in _CONSUMER_ARGS and name in _PRODUCER_ARGS:
            consumer[name] = producer[name] = value
        elif name in _CONSUMER_ARGS:
            consumer[name] = value
        elif name in _PRODUCER_ARGS:
            producer[name] = value
        else:
            raise ConfigurationError(f"{for_what}: unknown Kafka parameter {key!r}")
    if "bootstrap_servers" not in common:
        raise ConfigurationError(
            f"{for_what}: kafka_params needs 'bootstrap.servers' (or 'metadata.broker.list')"
        )
    if tls and "security_protocol" not in common:
        common["security_protocol"] = "SSL"
    return ClientSettings(
        tuple(sorted(common.items())),
        tuple(sorted(consumer.items())),
        tuple(sorted(producer.items())),
        tuple(sorted(tls.items())),
        group_id,
        reset,
    )

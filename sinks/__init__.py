"""Output connectors (shipped as ``aiostream_engine.sinks``).

``Sink`` is the protocol (``sinks.base``); ``dstream.write_to(sink)`` drives it. The Kafka, MQTT
and PostgreSQL sinks import their client libraries (extras ``kafka``, ``mqtt``, ``postgres``) only
when first named here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Sink, SinkWriteError
from .console import ConsoleSink
from .files import FileSink

if TYPE_CHECKING:
    from .kafka import KafkaSink
    from .mqtt import MqttSink
    from .postgres import PostgresSink

__all__ = ["ConsoleSink", "FileSink", "KafkaSink", "MqttSink", "PostgresSink", "Sink", "SinkWriteError"]

_OPTIONAL = {"KafkaSink": ".kafka", "MqttSink": ".mqtt", "PostgresSink": ".postgres"}


def __getattr__(name: str) -> Any:
    if name in _OPTIONAL:
        import importlib

        return getattr(importlib.import_module(_OPTIONAL[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""PySpark's ``SparkConf``: key/value settings for a ``SparkContext``.

Keys are kept as given (strings, as PySpark keeps them). The ones the engine knows
(``spark.master``, ``spark.app.name``, the ``spark.streaming.*`` keys and the others listed
by ``aiostream-engine conf``; our own snake_case names work too) configure the engine;
the rest (executor memory, serializer, ...) are kept, readable with ``get``, and unused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..conf import StreamingConf
from ..errors import ConfigurationError

log = logging.getLogger("aiostream_engine.pyspark")


class SparkConf:
    """Settings of a Spark application: ``SparkConf().setMaster("local[2]").setAppName(...)``."""

    def __init__(self, loadDefaults: bool = True, _jvm: object = None, _jconf: object = None) -> None:
        self._values: dict[str, str] = {}

    def set(self, key: str, value: object) -> SparkConf:
        """Set a property (kept as ``str(value)``, as PySpark does); returns self."""
        self._values[key] = str(value)
        return self

    def setIfMissing(self, key: str, value: object) -> SparkConf:
        """Set a property only if it is not set yet."""
        if key not in self._values:
            self.set(key, value)
        return self

    def setMaster(self, value: str) -> SparkConf:
        """The master URL: ``local``, ``local[N]``, ``local[*]`` (see README, Masters)."""
        return self.set("spark.master", value)

    def setAppName(self, value: str) -> SparkConf:
        """The application name (shown by the web UI)."""
        return self.set("spark.app.name", value)

    def setSparkHome(self, value: str) -> SparkConf:
        """Kept for ported code; there is no Spark installation to point at."""
        return self.set("spark.home", value)

    def setExecutorEnv(
        self, key: str | None = None, value: str | None = None,
        pairs: Iterable[tuple[str, str]] | None = None,
    ) -> SparkConf:
        """Environment variables for executors (kept; workers inherit the driver's)."""
        if (key is None) == (pairs is None):
            raise ValueError("setExecutorEnv: give either key and value, or pairs")
        for k, v in pairs if pairs is not None else [(key, value)]:
            self.set(f"spark.executorEnv.{k}", v)
        return self

    def setAll(self, pairs: Iterable[tuple[str, object]]) -> SparkConf:
        """Set several properties from (key, value) pairs."""
        for key, value in pairs:
            self.set(key, value)
        return self

    def get(self, key: str, defaultValue: str | None = None) -> str | None:
        """A property's value, or ``defaultValue`` if it is not set."""
        return self._values.get(key, defaultValue)

    def getAll(self) -> list[tuple[str, str]]:
        """Every property as (key, value) pairs."""
        return list(self._values.items())

    def contains(self, key: str) -> bool:
        """Whether ``key`` is set."""
        return key in self._values

    def toDebugString(self) -> str:
        """One ``key=value`` line per property."""
        return "\n".join(f"{k}={v}" for k, v in self._values.items())

    def copy(self) -> SparkConf:
        """An independent copy."""
        copied = SparkConf()
        copied._values = dict(self._values)
        return copied

    def streaming_conf(self) -> StreamingConf:
        """The engine's configuration from the keys it knows; the others are reported once
        at debug level and not used."""
        conf = StreamingConf()
        known = set(StreamingConf.keys()) | set(StreamingConf.spark_aliases())
        for key, value in self._values.items():
            if key in known:
                try:
                    conf.set(key, value)
                except (ValueError, TypeError) as exc:
                    raise ConfigurationError(f"SparkConf {key}={value!r}: {exc}") from exc
            elif key not in ("spark.master", "spark.home"):
                log.debug("SparkConf key %s is not used by aiostream-engine", key)
        return conf

    def __repr__(self) -> str:
        return f"SparkConf({self._values!r})"

"""aiostream-engine: Spark Streaming's DStream model, asyncio-native, no JVM."""

from __future__ import annotations

from . import aliases as _aliases
from .clock import Clock, ManualClock, SystemClock
from .conf import StreamingConf
from .context import StreamingContext
from .dstream.base import DStream
from .dstream.state_spec import MapWithStateDStream, State, StateSpec
from .errors import (
    CheckpointDamagedError,
    CheckpointFormatError,
    CheckpointSecurityError,
    CheckpointWriteError,
    ConfigurationError,
    ContextStateError,
    DataLossError,
    DataNotSerializableError,
    JobFailedError,
    NotSerializableError,
    OperatorError,
    StreamingError,
    TaskFailedError,
)
from .executor.runner import TaskRunner
from .hashing import stable_hash
from .rdd.core import RDD
from .rdd.stats import StatCounter
from .receiver.base import Receiver
from .recovery import CheckpointMismatchError
from .scheduler.batch_info import BatchInfo, OutputOperationInfo, StreamInputInfo
from .scheduler.listener import StreamingListener

#: The classes that get PySpark's names from ``aliases.ALIASES``.
_PYSPARK_NAMED: tuple[type, ...] = (
    DStream, MapWithStateDStream, RDD, StatCounter, StreamingContext, TaskRunner, State
)
for _cls in _PYSPARK_NAMED:
    _aliases.install(_cls)

__version__ = "0.1.0"

__all__ = [
    "BatchInfo",
    "CheckpointDamagedError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "CheckpointSecurityError",
    "CheckpointWriteError",
    "Clock",
    "ConfigurationError",
    "ContextStateError",
    "DataLossError",
    "DataNotSerializableError",
    "DStream",
    "JobFailedError",
    "ManualClock",
    "NotSerializableError",
    "OperatorError",
    "OutputOperationInfo",
    "RDD",
    "Receiver",
    "State",
    "StateSpec",
    "StreamingConf",
    "StreamingContext",
    "StreamingError",
    "StreamInputInfo",
    "StreamingListener",
    "SystemClock",
    "TaskFailedError",
    "stable_hash",
]

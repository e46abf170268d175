"""``Broadcast``: a read-only value for tasks, pickled once on the driver.

A task that uses a broadcast carries its pickle inside the task plan (the function that
reads ``b.value`` holds the broadcast), so it works on every backend: in process (where
the task sees the driver's own object), worker processes and Dask workers. A worker
process decodes a broadcast once and keeps the value, by the broadcast's id, for later
tasks (the last ``WORKER_CACHE_SIZE`` broadcasts); the bytes still travel with each task,
so a broadcast suits lookup tables of up to a few megabytes.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections import OrderedDict
from typing import Any, Generic, TypeVar

import cloudpickle

from ..errors import NotSerializableError

T = TypeVar("T")

#: Decoded broadcast values a worker process keeps for later tasks.
WORKER_CACHE_SIZE = 16

_worker_values: OrderedDict[str, Any] = OrderedDict()
_worker_lock = threading.Lock()


class Broadcast(Generic[T]):
    """``sc.broadcast(value)``; tasks read ``b.value``."""

    def __init__(self, value: T) -> None:
        self.id = uuid.uuid4().hex
        try:
            self._payload: bytes | None = cloudpickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # as Spark, refuse a value that cannot reach the tasks
            raise NotSerializableError("broadcast", exc) from exc
        self._value: T | None = value
        self._destroyed = False

    @property
    def value(self) -> T:
        """The broadcast value (in a task: this worker's decoded copy)."""
        if self._destroyed:
            raise RuntimeError(f"broadcast {self.id} was destroyed; it cannot be used")
        return self._value  # type: ignore[return-value]

    def unpersist(self, blocking: bool = False) -> None:
        """Spark drops executors' copies here; workers here keep a bounded cache of the
        latest broadcasts and tasks bring the value along, so there is nothing to drop."""

    def destroy(self, blocking: bool = False) -> None:
        """Release the value; using the broadcast afterwards is an error."""
        self._destroyed = True
        self._value = None
        self._payload = None

    def __reduce__(self) -> tuple[Any, ...]:
        if self._destroyed or self._payload is None:
            raise RuntimeError(f"broadcast {self.id} was destroyed; it cannot be sent to tasks")
        return _on_worker, (self.id, self._payload)

    def __repr__(self) -> str:
        return f"<Broadcast {self.id}>"


def _on_worker(broadcast_id: str, payload: bytes) -> Broadcast[Any]:
    """A broadcast unpickled in a task: decoded once per worker process."""
    with _worker_lock:
        if broadcast_id in _worker_values:
            _worker_values.move_to_end(broadcast_id)
            value = _worker_values[broadcast_id]
        else:
            value = cloudpickle.loads(payload)
            _worker_values[broadcast_id] = value
            while len(_worker_values) > WORKER_CACHE_SIZE:
                _worker_values.popitem(last=False)
    broadcast: Broadcast[Any] = Broadcast.__new__(Broadcast)
    broadcast.id = broadcast_id
    broadcast._payload = payload
    broadcast._value = value
    broadcast._destroyed = False
    return broadcast

"""Moving functions to workers with cloudpickle.

``ProcessPoolExecutor`` pickles a task's arguments in its feeder thread, off the event
loop. ``CloudPickled`` makes that pickling use cloudpickle (lambdas, closures, classes
defined in ``__main__``) without doing the work on the loop.
"""

from __future__ import annotations

from typing import Any

import cloudpickle

from ..errors import NotSerializableError


def _loads(payload: bytes) -> Any:
    return cloudpickle.loads(payload)


class CloudPickled:
    """Wraps an object so that pickling it goes through cloudpickle."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return _loads, (cloudpickle.dumps(self.value),)


def ensure_serializable(function: Any, operator: str) -> None:
    """Fail at graph-build time, naming the operator, if ``function`` cannot travel."""
    try:
        cloudpickle.dumps(function)
    except Exception as exc:
        raise NotSerializableError(operator, exc) from exc

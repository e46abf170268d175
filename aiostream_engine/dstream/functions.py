"""Adapting user functions that may or may not take the batch time as first argument
(PySpark accepts both ``f(rdd)`` and ``f(time, rdd)``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def positional_arity(func: Callable[..., Any]) -> int | None:
    """Positional parameters ``func`` takes; None when it takes ``*args``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            count += 1
    return count


def takes_time(func: Callable[..., Any], data_args: int) -> bool:
    """Whether ``func`` wants the batch time before its ``data_args`` data arguments."""
    return positional_arity(func) == data_args + 1


def is_async_callable(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    )

"""Window operations (window, reduce_by_window, reduce_by_key_and_window, ...).

Semantics are Spark Streaming's (DESIGN.md section 4): a windowed stream slides every S
and emits at t only when ``t - zero`` is a positive multiple of S; its window at t is the
union of the parent's batches with times in ``(t - W, t]`` (early windows are partial).
The stream classes live in ``reduced_window``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..timeutil import require_multiple, to_ms, to_seconds

if TYPE_CHECKING:
    from .base import DStream


def _one(_: Any) -> int:
    return 1


def _keyed_one(x: Any) -> tuple[Any, int]:
    return (x, 1)


def _constant_key(x: Any) -> tuple[None, Any]:
    return (None, x)


def _second(pair: Any) -> Any:
    return pair[1]


def _nonzero_count(pair: Any) -> bool:
    return pair[1] != 0


class WindowOperations:
    """Mixed into DStream."""

    # ---- durations ------------------------------------------------------------------------

    def _window_durations(
        self, window_duration: float | None, slide_duration: float | None, what: str
    ) -> tuple[int, int]:
        """(window_ms, slide_ms), checked against the batch interval and this stream's slide."""
        stream: DStream = self  # type: ignore[assignment]
        if window_duration is None:
            raise TypeError(f"{what}: window_duration is required")
        batch_ms = stream.context.batch_ms
        window_ms = to_ms(window_duration, f"{what}: window duration")
        require_multiple(window_ms, batch_ms, f"{what}: window duration")
        if slide_duration is None:
            slide_ms = stream.slide_ms
        else:
            slide_ms = to_ms(slide_duration, f"{what}: slide duration")
            require_multiple(slide_ms, batch_ms, f"{what}: slide duration")
        for name, duration_ms in (("window duration", window_ms), ("slide duration", slide_ms)):
            if duration_ms % stream.slide_ms:
                raise ValueError(
                    f"{what}: {name} ({to_seconds(duration_ms):g} s) must be a multiple of the "
                    f"slide duration of {stream.name} ({stream.slide_duration:g} s)"
                )
        return window_ms, slide_ms

    # ---- operations -------------------------------------------------------------------------

    def window(self, window_duration: float, slide_duration: float | None = None) -> DStream:
        """Every ``slide_duration`` (default: this stream's slide), the union of this
        stream's batches over the last ``window_duration`` seconds."""
        from .reduced_window import WindowedDStream

        stream: DStream = self  # type: ignore[assignment]
        window_ms, slide_ms = self._window_durations(window_duration, slide_duration, "window")
        return WindowedDStream(stream, window_ms, slide_ms)

    def reduce_by_key_and_window(
        self,
        func: Callable[[Any, Any], Any],
        inv_func: Callable[[Any, Any], Any] | None = None,
        window_duration: float | None = None,
        slide_duration: float | None = None,
        num_partitions: int | None = None,
        filter_func: Callable[[Any], bool] | None = None,
        *,
        name: str | None = None,
    ) -> DStream:
        """Per key, the values of the window reduced with ``func``.

        With ``inv_func`` (``inv_func(func(a, b), b) == a``) each slide updates the previous
        window incrementally: it removes the batches that left and adds those that entered,
        so its cost does not depend on the window length. ``filter_func((key, value))``
        keeps a key in the window; without it a key whose value returns to zero stays.
        ``name`` is the stable name its checkpointed state is restored by.
        """
        from .reduced_window import ReducedWindowedDStream

        stream: DStream = self  # type: ignore[assignment]
        what = "reduce_by_key_and_window"
        window_ms, slide_ms = self._window_durations(window_duration, slide_duration, what)
        stream._check(func, what)
        if inv_func is not None:
            stream._check(inv_func, f"{what} (inverse function)")
        if filter_func is not None:
            stream._check(filter_func, f"{what} (filter function)")
        reduced = stream.reduce_by_key(func, num_partitions)
        if inv_func is None:
            windowed = (
                reduced.window(to_seconds(window_ms), to_seconds(slide_ms))
                .reduce_by_key(func, num_partitions)
            )
            return windowed.filter(filter_func) if filter_func is not None else windowed
        return ReducedWindowedDStream(
            reduced,
            func,
            inv_func,
            filter_func,
            window_ms,
            slide_ms,
            num_partitions,
            name,
        )

    def reduce_by_window(
        self,
        func: Callable[[Any, Any], Any],
        inv_func: Callable[[Any, Any], Any] | None,
        window_duration: float,
        slide_duration: float | None = None,
    ) -> DStream:
        """One record per slide: the window's records reduced with ``func`` (incrementally
        with ``inv_func``). Without ``inv_func`` an empty window emits nothing."""
        stream: DStream = self  # type: ignore[assignment]
        return (
            stream.map(_constant_key)
            .reduce_by_key_and_window(func, inv_func, window_duration, slide_duration, 1)
            .map(_second)
        )

    def count_by_window(self, window_duration: float, slide_duration: float | None = None) -> DStream:
        """One record per slide: the number of records in the window (Spark's derivation:
        once a record has been seen, an empty window emits 0)."""
        stream: DStream = self  # type: ignore[assignment]
        return stream.map(_one).reduce_by_window(
            operator.add, operator.sub, window_duration, slide_duration
        )

    def count_by_value_and_window(
        self,
        window_duration: float,
        slide_duration: float | None = None,
        num_partitions: int | None = None,
    ) -> DStream:
        """(value, count) for every distinct value in the window; zero counts are dropped."""
        stream: DStream = self  # type: ignore[assignment]
        return stream.map(_keyed_one).reduce_by_key_and_window(
            operator.add,
            operator.sub,
            window_duration,
            slide_duration,
            num_partitions,
            _nonzero_count,
        )

    def group_by_key_and_window(
        self,
        window_duration: float,
        slide_duration: float | None = None,
        num_partitions: int | None = None,
    ) -> DStream:
        """(key, [values in the window]) for every key in the window."""
        return self.window(window_duration, slide_duration).group_by_key(num_partitions)

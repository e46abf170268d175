"""Reduce-side merge functions of the shuffles (run inside tasks, so module-level)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any


def concat(buckets: list[list[Any]]) -> Iterable[Any]:
    return chain.from_iterable(buckets)


def merge_combiners_by(
    merge_combiners: Callable[[Any, Any], Any],
) -> Callable[[list[list[Any]]], Iterable[Any]]:
    def merge(buckets: list[list[Any]]) -> Iterable[Any]:
        merged: dict[Any, Any] = {}
        for bucket in buckets:
            for key, combiner in bucket:
                if key in merged:
                    merged[key] = merge_combiners(merged[key], combiner)
                else:
                    merged[key] = combiner
        return merged.items()

    return merge


def group_values(buckets: list[list[Any]]) -> Iterable[Any]:
    grouped: dict[Any, list[Any]] = {}
    for bucket in buckets:
        for key, value in bucket:
            grouped.setdefault(key, []).append(value)
    return grouped.items()


def combine_values_by(
    create_combiner: Callable[[Any], Any],
    merge_value: Callable[[Any, Any], Any],
) -> Callable[[list[list[Any]]], Iterable[Any]]:
    """Reduce side for a shuffle that did not combine on the map side."""

    def merge(buckets: list[list[Any]]) -> Iterable[Any]:
        merged: dict[Any, Any] = {}
        for bucket in buckets:
            for key, value in bucket:
                if key in merged:
                    merged[key] = merge_value(merged[key], value)
                else:
                    merged[key] = create_combiner(value)
        return merged.items()

    return merge


def split_tagged(num_sides: int) -> Callable[[list[Any]], tuple[list[Any], ...]]:
    """cogroup: turn a key's [(side, value), ...] into one list of values per side."""

    def split(tagged: list[Any]) -> tuple[list[Any], ...]:
        sides: tuple[list[Any], ...] = tuple([] for _ in range(num_sides))
        for side, value in tagged:
            sides[side].append(value)
        return sides

    return split

"""PySpark's names for the engine's methods, generated from one table.

``ALIASES`` lists, per class, the snake_case methods PySpark has. Each gets:

* an alias under its camelCase name (``flat_map`` -> ``flatMap``; ``_SPELLED`` gives
  PySpark's own spelling where it is not plain camelCase, ``foreachRDD``), forwarding by
  name so a subclass that overrides the method is reached through the alias too;
* PySpark's keyword names: each parameter's camelCase form (``num_partitions`` ->
  ``numPartitions``, ``filter_func`` -> ``filterFunc``) or, where PySpark names it
  differently, the name ``_KEYWORDS`` gives (``RDD.fold``'s ``op``). They are accepted by
  the alias and, for a method whose name is the same in PySpark (``map``, ``window``,
  ``join``), by the method itself. The snake_case names keep working everywhere.

For type checkers the aliases are declared in each class, in a block that
``scripts/aliases.py --update`` writes from this table (``tests/test_aliases.py`` checks
that it is current).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

#: Method or parameter names whose PySpark spelling is not their camelCase form.
_SPELLED = {
    "foreach_rdd": "foreachRDD",
    "empty_rdd": "emptyRDD",
    "initial_rdd": "initialRDD",
    "stop_gracefully": "stopGraceFully",
}

#: PySpark's keyword names that are not the camelCase of ours, by "Class.method".
_KEYWORDS: dict[str, dict[str, str]] = {
    "DStream.reduce": {"f": "func"},
    "DStream.reduce_by_window": {"func": "reduceFunc", "inv_func": "invReduceFunc"},
    "RDD.fold": {"f": "op"},
    "StreamingContext.transform": {"streams": "dstreams", "func": "transformFunc"},
    "StreamingContext.add_streaming_listener": {"listener": "streamingListener"},
    "StreamingContext.remove_streaming_listener": {"listener": "streamingListener"},
    "StreamingContext.get_or_create": {"checkpoint_path": "checkpointPath", "setup": "setupFunc"},
    "TaskRunner.parallelize": {"data": "c"},
}

#: Per class, the snake_case methods (and properties) PySpark has under its own names.
ALIASES: dict[str, list[str]] = {
    "DStream": [
        "map", "flat_map", "filter", "map_partitions", "map_partitions_with_index", "reduce",
        "reduce_by_key", "combine_by_key", "partition_by", "foreach_rdd", "map_values",
        "flat_map_values", "key_by", "persist", "checkpoint", "group_by_key", "count_by_value",
        "save_as_text_files", "save_as_object_files", "transform", "transform_with",
        "repartition", "union", "cogroup", "join", "left_outer_join", "right_outer_join",
        "full_outer_join", "slice", "window", "reduce_by_window", "count_by_window",
        "count_by_value_and_window", "group_by_key_and_window", "reduce_by_key_and_window",
        "update_state_by_key", "map_with_state", "slide_duration",
    ],
    "MapWithStateDStream": ["state_snapshots"],
    "RDD": [
        "map", "flat_map", "filter", "map_partitions", "map_partitions_with_index",
        "map_values", "flat_map_values", "key_by", "reduce_by_key", "combine_by_key",
        "fold_by_key", "aggregate_by_key", "group_by_key", "group_by", "partition_by", "join",
        "left_outer_join", "right_outer_join", "full_outer_join", "subtract_by_key",
        "cogroup", "group_with", "sort_by_key", "sort_by", "distinct", "repartition",
        "coalesce", "union", "cartesian", "zip", "zip_with_index", "sample", "take_sample",
        "persist", "unpersist", "foreach",
        "foreach_partition", "count_by_value", "count_by_key", "collect_as_map",
        "take_ordered", "top", "take", "is_empty", "reduce", "fold", "aggregate", "max",
        "min", "sum", "mean", "variance", "stdev", "stats", "lookup", "save_as_text_file",
        "get_num_partitions",
    ],
    "StreamingContext": [
        "queue_stream", "socket_text_stream", "text_file_stream", "binary_records_stream",
        "receiver_stream",
        "await_termination", "await_termination_or_timeout", "add_streaming_listener",
        "remove_streaming_listener", "get_or_create", "spark_context", "transform", "stop",
    ],
    "TaskRunner": ["empty_rdd", "parallelize"],
    "State": ["get_option", "is_timing_out"],
    "StatCounter": ["merge_stats", "sample_variance", "sample_stdev", "as_dict"],
}


def camel_case(name: str) -> str:
    """PySpark's spelling of a snake_case name."""
    if name in _SPELLED:
        return _SPELLED[name]
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def keyword_names(cls_name: str, name: str, function: Callable[..., Any]) -> dict[str, str]:
    """PySpark's keyword name -> ours, for the parameters whose names differ."""
    special = _KEYWORDS.get(f"{cls_name}.{name}", {})
    names: dict[str, str] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        pyspark = special.get(parameter.name) or camel_case(parameter.name)
        if pyspark != parameter.name:
            names[pyspark] = parameter.name
    return names


def _translating(function: Callable[..., Any], keywords: dict[str, str]) -> Callable[..., Any]:
    """``function`` accepting PySpark's keyword names as well as its own."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            kwargs = {keywords.get(key, key): value for key, value in kwargs.items()}
        return function(*args, **kwargs)

    return call


def _forwarder(name: str, keywords: dict[str, str]) -> Callable[..., Any]:
    """The camelCase alias: calls the method by name (a subclass's override too)."""

    def alias(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            kwargs = {keywords.get(key, key): value for key, value in kwargs.items()}
        return getattr(self, name)(*args, **kwargs)

    alias.__name__ = camel_case(name)
    alias.__doc__ = f"PySpark's name of :meth:`{name}` (PySpark's keyword names accepted)."
    return alias


def install(cls: type, table_key: str | None = None) -> None:
    """Give ``cls`` PySpark's names for the methods its entry in ``ALIASES`` lists."""
    key = table_key or cls.__name__
    for name in ALIASES[key]:
        attribute = inspect.getattr_static(cls, name)
        camel = camel_case(name)
        if isinstance(attribute, property):  # properties alias as properties
            setattr(cls, camel, attribute)
            continue
        kind = type(attribute) if isinstance(attribute, classmethod | staticmethod) else None
        function = attribute.__func__ if kind is not None else attribute
        keywords = keyword_names(key, name, function)
        if kind is not None:  # e.g. get_or_create: the alias is a classmethod too
            translated = _translating(function, keywords) if keywords else function
            setattr(cls, camel, kind(translated))
            continue
        if camel != name:
            setattr(cls, camel, _forwarder(name, keywords))
        elif keywords:  # the same name in PySpark: the method itself learns its keywords
            setattr(cls, name, _translating(function, keywords))

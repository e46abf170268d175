"""PySpark's camelCase names as aliases of our snake_case methods, from one table.

Each entry is a snake_case method name; its alias is the camelCase form (``flat_map`` ->
``flatMap``) unless ``_SPELLED`` gives PySpark's own spelling. An alias forwards to the
method by name, so a subclass that overrides the method is reached through the alias too.
"""

from __future__ import annotations

from typing import Any

_SPELLED = {
    "foreach_rdd": "foreachRDD",
    "empty_rdd": "emptyRDD",
}

ALIASES: dict[str, list[str]] = {
    "DStream": [
        "flat_map", "map_partitions", "map_partitions_with_index", "map_values",
        "flat_map_values", "key_by", "count_by_value", "reduce_by_key", "combine_by_key",
        "group_by_key", "partition_by", "transform_with", "left_outer_join",
        "right_outer_join", "full_outer_join", "foreach_rdd", "save_as_text_files",
        "save_as_object_files", "slide_duration",
        "reduce_by_window", "count_by_window", "count_by_value_and_window",
        "group_by_key_and_window", "reduce_by_key_and_window",
        "update_state_by_key", "map_with_state", "state_snapshots",
    ],
    "RDD": [
        "flat_map", "map_partitions", "map_partitions_with_index", "map_values",
        "flat_map_values", "key_by", "reduce_by_key", "combine_by_key", "fold_by_key",
        "aggregate_by_key", "group_by_key", "group_by", "partition_by", "left_outer_join",
        "right_outer_join", "full_outer_join", "subtract_by_key", "sort_by_key", "sort_by",
        "foreach_partition", "count_by_value", "count_by_key", "collect_as_map",
        "take_ordered", "is_empty", "group_with",
    ],
    "StreamingContext": [
        "queue_stream", "socket_text_stream", "text_file_stream", "receiver_stream",
        "await_termination", "await_termination_or_timeout", "add_streaming_listener",
        "remove_streaming_listener", "add_py_file",
    ],
    "TaskRunner": ["empty_rdd", "add_py_file"],
}


def camel_case(name: str) -> str:
    if name in _SPELLED:
        return _SPELLED[name]
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _forwarder(name: str) -> Any:
    def alias(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, name)(*args, **kwargs)

    alias.__name__ = camel_case(name)
    alias.__doc__ = f"PySpark name of :meth:`{name}`."
    return alias


def install(cls: type, table_key: str | None = None) -> None:
    for name in ALIASES[table_key or cls.__name__]:
        attribute = cls.__dict__.get(name)
        if isinstance(attribute, property):  # properties alias as properties
            setattr(cls, camel_case(name), attribute)
        else:
            setattr(cls, camel_case(name), _forwarder(name))

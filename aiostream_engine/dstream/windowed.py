"""Window operations (window, reduce_by_window, reduce_by_key_and_window, ...)."""

from __future__ import annotations


class WindowOperations:
    """Mixed into DStream."""

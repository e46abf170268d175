"""Stateful operations (update_state_by_key, map_with_state)."""

from __future__ import annotations


class StateOperations:
    """Mixed into DStream."""

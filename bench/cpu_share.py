"""CPU seconds of the processes of a benchmark run, by role (driver, workers, broker, ...),
between two snapshots: what each part of the pipeline costs per message."""

from __future__ import annotations

import psutil


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads); 0 once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


class CpuShare:
    """Snapshots of named processes; ``workers``: every other descendant of this process."""

    def __init__(self, named: dict[str, list[int]]) -> None:
        self.named = named
        self._start = self._snapshot()

    def _snapshot(self) -> dict[int, float]:
        me = psutil.Process()
        pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
        pids.update(pid for group in self.named.values() for pid in group)
        return {pid: cpu_seconds(pid) for pid in pids}

    def seconds(self) -> dict[str, float]:
        """CPU seconds since construction: ``driver`` (this process), each named group,
        ``workers`` (the other descendants)."""
        end = self._snapshot()
        used = {pid: end[pid] - self._start.get(pid, 0.0) for pid in end}
        named_pids = {pid for group in self.named.values() for pid in group}
        me = psutil.Process().pid
        out = {"driver": used.pop(me, 0.0)}
        for name, group in self.named.items():
            out[name] = sum(used.get(pid, 0.0) for pid in group)
        out["workers"] = sum(v for pid, v in used.items() if pid not in named_pids)
        return out

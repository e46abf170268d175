"""What the scheduler records about each batch (Spark's BatchInfo)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OutputOperationInfo:
    batch_time: float
    id: int
    name: str
    start_time: float | None = None
    end_time: float | None = None
    failure_reason: str | None = None

    @property
    def duration(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time


@dataclass
class BatchInfo:
    """Times are seconds on the context's clock."""

    batch_time: float
    stream_id_to_num_records: dict[int, int]
    submission_time: float
    processing_start_time: float | None = None
    processing_end_time: float | None = None
    output_operation_infos: dict[int, OutputOperationInfo] = field(default_factory=dict)

    @property
    def num_records(self) -> int:
        return sum(self.stream_id_to_num_records.values())

    @property
    def scheduling_delay(self) -> float | None:
        if self.processing_start_time is None:
            return None
        return self.processing_start_time - self.submission_time

    @property
    def processing_delay(self) -> float | None:
        if self.processing_start_time is None or self.processing_end_time is None:
            return None
        return self.processing_end_time - self.processing_start_time

    @property
    def total_delay(self) -> float | None:
        if self.scheduling_delay is None or self.processing_delay is None:
            return None
        return self.scheduling_delay + self.processing_delay

    @property
    def failed(self) -> bool:
        return any(o.failure_reason for o in self.output_operation_infos.values())

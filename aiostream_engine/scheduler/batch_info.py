"""What the scheduler records about each batch (Spark's BatchInfo)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..executor.task_counts import TaskCounts


@dataclass
class OutputOperationInfo:
    batch_time: float
    id: int
    name: str
    start_time: float | None = None
    end_time: float | None = None
    failure_reason: str | None = None
    #: Attempts of the tasks its job ran (retries, failures, workers lost).
    tasks: TaskCounts = field(default_factory=TaskCounts)

    @property
    def duration(self) -> float | None:
        """Seconds the operation ran; None until it has ended."""
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time


@dataclass
class StreamInputInfo:
    """What one input stream contributed to one batch (Spark's StreamInputInfo).

    ``metadata`` holds what a source wants shown about its input (plain, JSON-friendly
    values): a direct Kafka stream its offset ranges, a rate-controlled stream its rate
    bound. Spark's convention: a human-readable summary goes under ``"Description"``.
    """

    input_stream_id: int
    num_records: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchInfo:
    """Times are seconds on the context's clock."""

    batch_time: float
    stream_id_to_input_info: dict[int, StreamInputInfo]
    submission_time: float
    processing_start_time: float | None = None
    processing_end_time: float | None = None
    output_operation_infos: dict[int, OutputOperationInfo] = field(default_factory=dict)

    @property
    def stream_id_to_num_records(self) -> dict[int, int]:
        """Records per input stream id."""
        return {i: info.num_records for i, info in self.stream_id_to_input_info.items()}

    @property
    def num_records(self) -> int:
        """Records of the batch from every input stream."""
        return sum(info.num_records for info in self.stream_id_to_input_info.values())

    @property
    def scheduling_delay(self) -> float | None:
        """Seconds from submission to the first job's start; None until then."""
        if self.processing_start_time is None:
            return None
        return self.processing_start_time - self.submission_time

    @property
    def processing_delay(self) -> float | None:
        """Seconds from the first job's start to the last job's end; None until then."""
        if self.processing_start_time is None or self.processing_end_time is None:
            return None
        return self.processing_end_time - self.processing_start_time

    @property
    def total_delay(self) -> float | None:
        """Scheduling plus processing delay; None until the batch has ended."""
        if self.scheduling_delay is None or self.processing_delay is None:
            return None
        return self.scheduling_delay + self.processing_delay

    @property
    def failed(self) -> bool:
        """Whether an output operation of the batch failed."""
        return any(o.failure_reason for o in self.output_operation_infos.values())

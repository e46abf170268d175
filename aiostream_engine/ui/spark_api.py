"""Spark's streaming REST API (``/api/v1/applications/{app-id}/streaming/...``) as plain
dicts, with Spark's field names and conventions, so tooling written for Spark reads it:

* times are dates in Spark's format (``2015-08-18T18:50:27.000GMT``), durations whole
  milliseconds, batch ids the batch time in milliseconds;
* averages are Spark's: over the retained batches (waiting, running and the last
  ``retained_batches`` completed), input rate in records per second, delays in whole
  milliseconds (integer mean);
* a field Spark leaves out when it has no value (``Option``) is left out.

The functions read a ``StreamingStatus``; ``app.py`` routes the paths to them.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..scheduler.batch_info import BatchInfo, OutputOperationInfo
from .status import StreamingStatus, batch_id

#: Spark's BatchStatus values, in the order Spark lists them.
BATCH_STATUSES = ("COMPLETED", "QUEUED", "PROCESSING")


class NotFound(LookupError):
    """Spark's NotFoundException: the API answers 404 with this message."""


class BadParameter(ValueError):
    """Spark's BadParameterException: the API answers 400 with this message."""


@dataclass
class Application:
    """What ``/api/v1/applications`` says about this run."""

    id: str
    name: str
    version: str
    user: str = ""
    end_time: float | None = None  # set once the context has stopped

    def __post_init__(self) -> None:
        if not self.user:
            try:
                self.user = getpass.getuser()
            except (KeyError, OSError):  # no name for this uid (a container)
                self.user = "unknown"


def spark_date(seconds: float) -> str:
    """A time as Spark's REST API writes dates: UTC, milliseconds, a ``GMT`` suffix."""
    ms = round(seconds * 1000)
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}GMT"


def millis(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _mean_ms(values: Iterable[float | None]) -> int | None:
    ms = [millis(v) for v in values if v is not None]
    return sum(ms) // len(ms) if ms else None  # type: ignore[arg-type]


# ---- /applications ----------------------------------------------------------------------


def applications(app: Application, status: StreamingStatus, now: float) -> list[dict[str, Any]]:
    start = status.start_time if status.start_time is not None else now
    end = app.end_time
    last = end if end is not None else now
    attempt = {
        "startTime": spark_date(start),
        "endTime": spark_date(end if end is not None else -0.001),  # Spark: -1 while running
        "lastUpdated": spark_date(last),
        "duration": millis(last - start),
        "sparkUser": app.user,
        "completed": end is not None,
        "appSparkVersion": app.version,
        "startTimeEpoch": millis(start),
        "endTimeEpoch": millis(end) if end is not None else -1,
        "lastUpdatedEpoch": millis(last),
    }
    return [{"id": app.id, "name": app.name, "attempts": [attempt]}]


# ---- /streaming/statistics --------------------------------------------------------------


def statistics(status: StreamingStatus) -> dict[str, Any]:
    batches = status.retained_batches()
    batch_ms = millis(status.batch_interval)
    assert batch_ms is not None
    rates = [b.num_records * 1000.0 / batch_ms for b in batches]
    num_receivers = len(status.receivers)
    return _present({
        "startTime": spark_date(status.start_time) if status.start_time is not None else None,
        "batchDuration": batch_ms,
        "numReceivers": num_receivers,
        "numActiveReceivers": status.active_receivers,
        "numInactiveReceivers": status.inactive_receivers,
        "numTotalCompletedBatches": status.total_completed,
        "numRetainedCompletedBatches": len(status.completed),
        "numActiveBatches": len(status.waiting) + len(status.running),
        "numProcessedRecords": status.total_processed_records,
        "numReceivedRecords": status.total_received_records,
        "avgInputRate": sum(rates) / len(rates) if rates else None,
        "avgSchedulingDelay": _mean_ms(b.scheduling_delay for b in batches),
        "avgProcessingTime": _mean_ms(b.processing_delay for b in batches),
        "avgTotalDelay": _mean_ms(b.total_delay for b in batches),
    })


# ---- /streaming/receivers ---------------------------------------------------------------


def event_rates(status: StreamingStatus, stream_id: int) -> list[list[float]]:
    """``[batch time ms, records/s]`` of one input stream over the retained batches."""
    batch_ms = millis(status.batch_interval)
    assert batch_ms is not None
    return [
        [batch_id(b), _records(b, stream_id) * 1000.0 / batch_ms]
        for b in status.retained_batches()
    ]


def _records(info: BatchInfo, stream_id: int) -> int:
    input_info = info.stream_id_to_input_info.get(stream_id)
    return input_info.num_records if input_info is not None else 0


def receivers(status: StreamingStatus) -> list[dict[str, Any]]:
    """Every input stream (as Spark lists them), receiver-fed or not, by stream id."""
    return [receiver(status, stream_id) for stream_id in sorted(status.input_names)]


def receiver(status: StreamingStatus, stream_id: int) -> dict[str, Any]:
    if stream_id not in status.input_names:
        raise NotFound(f"unknown receiver: {stream_id}")
    state = status.receivers.get(stream_id)
    rates = event_rates(status, stream_id)
    info = state.info if state is not None else None
    return _present({
        "streamId": stream_id,
        "streamName": info.name if info is not None else status.input_names[stream_id],
        "isActive": info.active if info is not None else None,
        # Receivers run in the driver process, on its event loop.
        "executorId": "driver" if info is not None else None,
        "executorHost": status.host if info is not None else None,
        "lastErrorTime": (
            spark_date(state.last_error_time)
            if state is not None and state.last_error_time is not None else None
        ),
        "lastErrorMessage": info.last_error or None if info is not None else None,
        "lastError": info.last_error or None if info is not None else None,
        "avgEventRate": sum(r for _, r in rates) / len(rates) if rates else None,
        "eventRates": rates,
    })


# ---- /streaming/batches -----------------------------------------------------------------


def parse_statuses(values: list[str]) -> set[str]:
    """The ``status`` query parameters (repeatable, any case); none means all."""
    wanted = {v.upper() for v in values}
    unknown = wanted - set(BATCH_STATUSES)
    if unknown:
        raise BadParameter(
            f"unknown batch status {', '.join(sorted(unknown))}; one of {', '.join(BATCH_STATUSES)}"
        )
    return wanted or set(BATCH_STATUSES)


def batches(status: StreamingStatus, statuses: set[str] | None = None) -> list[dict[str, Any]]:
    """Batches of the wanted statuses, newest first."""
    wanted = statuses or set(BATCH_STATUSES)
    found = [batch(status, b) for b in status.retained_batches() if status.status_of(b) in wanted]
    return sorted(found, key=lambda b: -b["batchId"])


def find_batch(status: StreamingStatus, batch_ms: int) -> BatchInfo:
    info = status.batch(batch_ms)
    if info is None:
        raise NotFound(f"unknown batch: {batch_ms}")
    return info


def batch(status: StreamingStatus, info: BatchInfo) -> dict[str, Any]:
    ops = list(info.output_operation_infos.values())
    failures = [op.failure_reason for op in sorted(ops, key=lambda o: o.id) if op.failure_reason]
    return _present({
        "batchId": batch_id(info),
        "batchTime": spark_date(info.batch_time),
        "status": status.status_of(info),
        "batchDuration": millis(status.batch_interval),
        "inputSize": info.num_records,
        "schedulingDelay": millis(info.scheduling_delay),
        "processingTime": millis(info.processing_delay),
        "totalDelay": millis(info.total_delay),
        "numActiveOutputOps": sum(1 for op in ops if op.end_time is None),
        "numCompletedOutputOps": sum(
            1 for op in ops if op.end_time is not None and not op.failure_reason
        ),
        "numFailedOutputOps": len(failures),
        "numTotalOutputOps": len(ops),
        "firstFailureReason": failures[0] if failures else None,
    })


# ---- /streaming/batches/{id}/operations -------------------------------------------------


def operations(info: BatchInfo) -> list[dict[str, Any]]:
    return [operation(op) for _, op in sorted(info.output_operation_infos.items())]


def find_operation(info: BatchInfo, op_id: int) -> OutputOperationInfo:
    op = info.output_operation_infos.get(op_id)
    if op is None:
        raise NotFound(f"unknown output operation: {op_id}")
    return op


def operation(op: OutputOperationInfo) -> dict[str, Any]:
    return _present({
        "outputOpId": op.id,
        "name": op.name,
        "description": op.name,
        "startTime": spark_date(op.start_time) if op.start_time is not None else None,
        "endTime": spark_date(op.end_time) if op.end_time is not None else None,
        "duration": millis(op.duration),
        "failureReason": op.failure_reason or None,
        # Spark lists the Spark jobs an operation ran; this engine has no job ids.
        "jobIds": [],
    })

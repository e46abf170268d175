"""The page's own JSON (``/api/ui/...``): what the Streaming page shows beyond Spark's REST
API (per-stream records of each batch, input metadata such as Kafka offset ranges, task
retries per output operation, rate bounds, state sizes, dead letters, loop lag).

Plain data only; the page renders it as text (never as HTML).
"""

from __future__ import annotations

from typing import Any

from ..scheduler.batch_info import BatchInfo
from . import spark_api
from .engine_view import EngineView
from .status import StreamingStatus, batch_id


def batch_row(status: StreamingStatus, info: BatchInfo) -> dict[str, Any]:
    """One batch as the page's tables and charts use it (times in seconds)."""
    ops = info.output_operation_infos.values()
    failure = next(
        (op.failure_reason for op in sorted(ops, key=lambda o: o.id) if op.failure_reason), None
    )
    return {
        "id": batch_id(info),
        "time": info.batch_time,
        "status": status.status_of(info),
        "records": info.num_records,
        "inputs": {str(i): v.num_records for i, v in info.stream_id_to_input_info.items()},
        "schedulingDelay": info.scheduling_delay,
        "processingTime": info.processing_delay,
        "totalDelay": info.total_delay,
        "ops": len(info.output_operation_infos),
        "opsDone": sum(1 for op in ops if op.end_time is not None),
        "opsFailed": sum(1 for op in ops if op.failure_reason),
        "failure": failure,
    }


def batch_rows(status: StreamingStatus) -> list[dict[str, Any]]:
    return [batch_row(status, info) for info in status.retained_batches()]


def summary(
    status: StreamingStatus, view: EngineView, app: spark_api.Application, clients: int
) -> dict[str, Any]:
    """Everything on the page except the batch list: statistics, receivers, counters."""
    bounds = view.rate_bounds()
    counters = {r.stream_id: r for r in view.receivers()}
    streams = []
    for stream_id, name in sorted(status.input_names.items()):
        state = status.receivers.get(stream_id)
        r = counters.get(stream_id)
        streams.append({
            "id": stream_id,
            "name": name,
            "receiver": state is not None,
            "active": state.info.active if state else None,
            "location": f"driver ({status.host})" if state else None,
            "lastError": (state.info.last_error or None) if state else None,
            "lastErrorTime": state.last_error_time if state else None,
            "restarts": r.restarts if r else 0,
            "errors": r.errors if r else 0,
            "deadLetters": status.dead_letters_by_stream.get(stream_id, 0),
            "rateBound": bounds.get(stream_id),
            "records": status.records_by_stream.get(stream_id, 0),
        })
    return {
        "app": {"id": app.id, "name": app.name, "version": app.version},
        "batchInterval": status.batch_interval,
        "startTime": status.start_time,
        "statistics": spark_api.statistics(status),
        "failedBatches": status.total_failed,
        "streams": streams,
        "engine": view.extra(),
        "clients": clients,
    }


def batch_detail(status: StreamingStatus, info: BatchInfo) -> dict[str, Any]:
    """The batch page: the batch, each input's records and metadata, each output
    operation with its tasks' attempts."""
    inputs = [
        {
            "id": stream_id,
            "name": status.input_names.get(stream_id, f"stream-{stream_id}"),
            "records": input_info.num_records,
            "metadata": input_info.metadata,
        }
        for stream_id, input_info in sorted(info.stream_id_to_input_info.items())
    ]
    operations = [
        {
            **spark_api.operation(op),
            "startTime": op.start_time,
            "endTime": op.end_time,
            "tasks": vars(op.tasks).copy(),
        }
        for _, op in sorted(info.output_operation_infos.items())
    ]
    return {
        "batch": spark_api.batch(status, info),
        "row": batch_row(status, info),
        "submissionTime": info.submission_time,
        "processingStartTime": info.processing_start_time,
        "processingEndTime": info.processing_end_time,
        "inputs": inputs,
        "operations": operations,
    }

"""Spark's streaming REST API against a ManualClock run: every field of the statistics,
batch, operation and receiver answers equals what the BatchInfos say, for completed,
running, queued and failed batches."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aiostream_engine import BatchInfo, ManualClock
from aiostream_engine.scheduler.listener import ReceiverInfo, ReceiverStarted, ReceiverStopped
from aiostream_engine.ui import spark_api
from aiostream_engine.ui.status import StreamingStatus

from .scenario import ERROR, RECEIVED, RECEIVER_ERROR, RECEIVER_NAME, Scenario

pytestmark = pytest.mark.anyio


def date(seconds: float) -> str:
    """Spark's date format, for the whole seconds this clock uses."""
    assert seconds == int(seconds) or seconds * 2 == int(seconds * 2)
    whole = int(seconds)
    return f"1970-01-01T00:00:{whole:02d}.{round((seconds - whole) * 1000):03d}GMT"


def ms(value: float | None) -> int | None:
    return None if value is None else round(value * 1000)


def expected_batch(info: BatchInfo, status: str) -> dict[str, Any]:
    """Spark's BatchInfo fields from ours, written out field by field."""
    ops = list(info.output_operation_infos.values())
    failed = [op for op in ops if op.failure_reason]
    fields = {
        "batchId": round(info.batch_time * 1000),
        "batchTime": date(info.batch_time),
        "status": status,
        "batchDuration": 1000,
        "inputSize": info.num_records,
        "schedulingDelay": ms(info.scheduling_delay),
        "processingTime": ms(info.processing_delay),
        "totalDelay": ms(info.total_delay),
        "numActiveOutputOps": sum(op.end_time is None for op in ops),
        "numCompletedOutputOps": sum(op.end_time is not None and not op.failure_reason for op in ops),
        "numFailedOutputOps": len(failed),
        "numTotalOutputOps": len(ops),
        "firstFailureReason": failed[0].failure_reason if failed else None,
    }
    return {k: v for k, v in fields.items() if v is not None}


async def api(client: httpx.AsyncClient, path: str = "", **params: Any) -> Any:
    apps = (await client.get("api/v1/applications")).json()
    response = await client.get(f"api/v1/applications/{apps[0]['id']}/streaming/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_batches_and_statistics_while_running_then_completed_and_failed() -> None:
    async with Scenario() as run, httpx.AsyncClient(base_url=run.ssc.ui_url) as client:
        infos = run.recorder.infos
        await run.first_batch_done()
        await run.running_and_queued()

        batches = await api(client, "batches")
        assert batches == [
            expected_batch(infos[3.0], "QUEUED"),
            expected_batch(infos[2.0], "PROCESSING"),
            expected_batch(infos[1.0], "COMPLETED"),
        ]
        # The same, as literal values: batch 2 runs its first output, the second waits.
        assert batches[1] == {
            "batchId": 2000, "batchTime": "1970-01-01T00:00:02.000GMT", "status": "PROCESSING",
            "batchDuration": 1000, "inputSize": 2, "schedulingDelay": 0,
            "numActiveOutputOps": 2, "numCompletedOutputOps": 0, "numFailedOutputOps": 0,
            "numTotalOutputOps": 2,
        }
        assert "schedulingDelay" not in batches[0]  # queued: Spark leaves it out
        assert await api(client, "batches", status=["queued", "PROCESSING"]) == batches[:2]
        assert await api(client, "batches/2000") == batches[1]
        assert await api(client, "statistics") == {
            "startTime": "1970-01-01T00:00:00.000GMT", "batchDuration": 1000,
            "numReceivers": 0, "numActiveReceivers": 0, "numInactiveReceivers": 0,
            "numTotalCompletedBatches": 1, "numRetainedCompletedBatches": 1,
            "numActiveBatches": 2, "numProcessedRecords": 3, "numReceivedRecords": 5,
            "avgInputRate": 2.0, "avgSchedulingDelay": 0, "avgProcessingTime": 0,
            "avgTotalDelay": 0,
        }
        running_ops = await api(client, "batches/2000/operations")
        assert [op.get("endTime") for op in running_ops] == [None, None]
        assert running_ops[0]["startTime"] == "1970-01-01T00:00:02.000GMT"

        await run.all_done()
        batches = await api(client, "batches")
        # Batch 3.0's first output failed: a failed batch never completes (issue 11); under
        # the scenario's retry policy it stays PROCESSING, its second output waiting behind
        # the retry of the first.
        assert batches == [
            expected_batch(infos[3.0], "PROCESSING"),
            expected_batch(infos[2.0], "COMPLETED"),
            expected_batch(infos[1.0], "COMPLETED"),
        ]
        assert [(b["schedulingDelay"], b.get("processingTime"), b.get("totalDelay"))
                for b in batches] == [(500, None, None), (0, 1500, 1500), (0, 0, 0)]
        assert batches[0]["numFailedOutputOps"] == 1
        assert batches[0]["numActiveOutputOps"] == 1
        assert batches[0]["numCompletedOutputOps"] == 0
        assert batches[0]["firstFailureReason"] == ERROR
        assert await api(client, "batches", status="QUEUED") == []
        assert await api(client, "statistics") == {
            "startTime": "1970-01-01T00:00:00.000GMT", "batchDuration": 1000,
            "numReceivers": 0, "numActiveReceivers": 0, "numInactiveReceivers": 0,
            "numTotalCompletedBatches": 2, "numRetainedCompletedBatches": 2,
            "numActiveBatches": 1, "numProcessedRecords": 5, "numReceivedRecords": 6,
            "avgInputRate": 2.0, "avgSchedulingDelay": 500 // 3, "avgProcessingTime": 1500 // 2,
            "avgTotalDelay": 1500 // 2,
        }
        operations = await api(client, "batches/3000/operations")
        assert operations[0] == {
            "outputOpId": 0, "name": infos[3.0].output_operation_infos[0].name,
            "description": infos[3.0].output_operation_infos[0].name,
            "startTime": "1970-01-01T00:00:03.500GMT", "endTime": "1970-01-01T00:00:03.500GMT",
            "duration": 0, "failureReason": ERROR, "jobIds": [],
        }
        assert "startTime" not in operations[1] and "failureReason" not in operations[1]
        assert await api(client, "batches/2000/operations/0") == {
            "outputOpId": 0, "name": infos[2.0].output_operation_infos[0].name,
            "description": infos[2.0].output_operation_infos[0].name,
            "startTime": "1970-01-01T00:00:02.000GMT", "endTime": "1970-01-01T00:00:03.500GMT",
            "duration": 1500, "jobIds": [],
        }
        receivers = await api(client, "receivers")
        assert receivers == [{
            "streamId": 0, "streamName": "queue_stream", "avgEventRate": 2.0,
            "eventRates": [[1000, 3.0], [2000, 2.0], [3000, 1.0]],
        }]
    assert run.ssc.errors == []  # a failure with a retry to come is not the job's error


async def test_receivers_report_state_errors_and_rates() -> None:
    async with Scenario(with_receiver=True) as run, httpx.AsyncClient(base_url=run.ssc.ui_url) as client:
        await run.until(lambda: 1 in run.status.receivers and run.status.receivers[1].info.last_error)
        await run.first_batch_done()
        receiver = await api(client, "receivers/1")
        assert receiver == {
            "streamId": 1, "streamName": RECEIVER_NAME, "isActive": True,
            "executorId": "driver", "executorHost": run.status.host,
            "lastErrorTime": "1970-01-01T00:00:00.000GMT",
            "lastErrorMessage": RECEIVER_ERROR, "lastError": RECEIVER_ERROR,
            "avgEventRate": float(len(RECEIVED)), "eventRates": [[1000, float(len(RECEIVED))]],
        }
        assert [r["streamId"] for r in await api(client, "receivers")] == [0, 1]
        statistics = await api(client, "statistics")
        assert [statistics[k] for k in RECEIVER_COUNTS] == [1, 1, 0]


RECEIVER_COUNTS = ("numReceivers", "numActiveReceivers", "numInactiveReceivers")


def test_inactive_receivers_are_the_graphs_receiver_streams_not_active_as_in_spark() -> None:
    """Spark: numReceivers counts receivers that reported, numInactiveReceivers the
    graph's receiver streams less the active ones (one not started yet is inactive)."""
    status = StreamingStatus(ManualClock(0.0), 1.0, retained=10)
    status.set_inputs({0: "a", 1: "b", 2: "queue"}, receiver_streams=2)

    def counts() -> list[int]:
        statistics = spark_api.statistics(status)
        return [statistics[k] for k in RECEIVER_COUNTS]

    assert counts() == [0, 0, 2]
    status.on_receiver_started(ReceiverStarted(ReceiverInfo(0, "a", active=True)))
    assert counts() == [1, 1, 1]
    status.on_receiver_stopped(ReceiverStopped(ReceiverInfo(0, "a", active=False)))
    assert counts() == [1, 0, 2]


async def test_unknown_ids_are_404_and_bad_status_400_as_in_spark() -> None:
    async with Scenario() as run, httpx.AsyncClient(base_url=run.ssc.ui_url) as client:
        await run.first_batch_done()
        app_id = (await client.get("api/v1/applications")).json()[0]["id"]
        base = f"api/v1/applications/{app_id}/streaming"
        for path, message in [
            (f"{base}/batches/999", "unknown batch: 999"),
            (f"{base}/batches/1000/operations/7", "unknown output operation: 7"),
            (f"{base}/receivers/5", "unknown receiver: 5"),
            ("api/v1/applications/nope/streaming/statistics", "no such app: nope"),
        ]:
            response = await client.get(path)
            assert (response.status_code, response.text) == (404, message)
        response = await client.get(f"{base}/batches", params={"status": "DONE"})
        assert response.status_code == 400 and "DONE" in response.text
        # Nothing on the API changes the job: only GET is routed.
        assert (await client.post(f"{base}/batches")).status_code == 405


async def test_applications_lists_this_run() -> None:
    async with Scenario(conf={"spark.app.name": "<b>iot</b>"}) as run:
        async with httpx.AsyncClient(base_url=run.ssc.ui_url) as client:
            await run.first_batch_done()
            (app,) = (await client.get("api/v1/applications")).json()
    assert app["name"] == "<b>iot</b>"
    assert app["id"].startswith("local-")
    (attempt,) = app["attempts"]
    assert attempt["startTime"] == "1970-01-01T00:00:00.000GMT"
    assert attempt["completed"] is False
    assert attempt["endTimeEpoch"] == -1
    assert attempt["duration"] == 1000  # the clock stood at 1.0

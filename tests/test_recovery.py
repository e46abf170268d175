"""Recovery after SIGKILL: a stateful, windowed job killed mid-stream and restarted with
get_or_create writes, batch for batch, what a run that never crashed writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

JOB = Path(__file__).with_name("recovery_job.py")
LAST = 30


def _run(checkpoint: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(JOB), str(checkpoint), str(out), str(LAST), *extra],
        capture_output=True, text=True, timeout=180, check=False,
    )


def _run_and_kill_after(checkpoint: Path, out: Path, batch: int) -> None:
    """Start the job and SIGKILL it as soon as it reports batch ``batch`` completed."""
    process = subprocess.Popen(
        [sys.executable, str(JOB), str(checkpoint), str(out), str(LAST)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("completed ") and int(line.split()[1]) >= batch:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def _outputs(out: Path) -> dict[str, list[list[object]]]:
    """Batches 1..LAST. The job stops gracefully once batch LAST completes; on a loaded
    machine the next batch time may already have come, and that batch is finished too."""
    return {
        p.name: json.loads(p.read_text())
        for p in sorted(out.glob("*.json"))
        if int(p.name.split(".")[0]) <= LAST
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[object]]]:
    base = tmp_path_factory.mktemp("reference")
    result = _run(base / "checkpoint", base / "out")
    assert result.returncode == 0, result.stderr
    outputs = _outputs(base / "out")
    assert len(outputs) == 2 * LAST  # a state and a window file per batch
    return outputs


def test_sigkill_mid_stream_then_get_or_create_gives_the_uncrashed_outputs(
    tmp_path: Path, reference: dict[str, list[list[object]]]
) -> None:
    _run_and_kill_after(tmp_path / "checkpoint", tmp_path / "out", batch=12)
    written_before_crash = len(_outputs(tmp_path / "out"))
    assert 2 * 12 <= written_before_crash < 2 * LAST
    result = _run(tmp_path / "checkpoint", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert _outputs(tmp_path / "out") == reference


def test_restart_with_a_new_stateless_operator_keeps_the_state(
    tmp_path: Path, reference: dict[str, list[list[object]]]
) -> None:
    _run_and_kill_after(tmp_path / "checkpoint", tmp_path / "out", batch=12)
    result = _run(tmp_path / "checkpoint", tmp_path / "out", "extra_stateless")
    assert result.returncode == 0, result.stderr
    outputs = _outputs(tmp_path / "out")
    upper = {name: rows for name, rows in outputs.items() if ".upper." in name}
    assert upper  # the new operator ran after the restart
    assert {n: r for n, r in outputs.items() if ".upper." not in n} == reference


def test_restart_without_a_stateful_stream_is_refused_naming_it(tmp_path: Path) -> None:
    _run_and_kill_after(tmp_path / "checkpoint", tmp_path / "out", batch=8)
    result = _run(tmp_path / "checkpoint", tmp_path / "out", "no_state")
    assert result.returncode != 0
    assert "stateful stream 'update_state_by_key#0' is in the checkpoint but not in the graph" in (
        result.stderr
    )
    assert "fresh=['update_state_by_key#0']" in result.stderr

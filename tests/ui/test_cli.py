"""``aiostream-engine demo`` prints the web UI's address, and the UI answers there."""

from __future__ import annotations

import os
import re
import subprocess

import httpx
import pytest

from tests.test_demo import _cli


@pytest.mark.slow
def test_demo_prints_the_ui_address_and_serves_it() -> None:
    process = subprocess.Popen(
        [*_cli(), "demo", "--duration", "4", "--master", "local", "--ui-port", "0", "--window", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "AIOSTREAM_UI_ENABLED": "true"},
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            found = re.match(r"web UI: (http://127\.0\.0\.1:\d+/) \(Prometheus metrics at (\S+)\)", line)
            if found:
                break
        else:
            pytest.fail(f"no UI line; stderr: {process.stderr.read() if process.stderr else ''}")
        url = found[1]
        (app,) = httpx.get(f"{url}api/v1/applications", timeout=10).json()
        assert app["attempts"][0]["completed"] is False
        assert "aiostream_batches_completed_total" in httpx.get(found[2], timeout=10).text
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

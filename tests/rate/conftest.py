"""A private mosquitto without persistence for the rate tests: the suite's shared fixture
saves its store on every change, which makes a broker holding thousands of queued QoS 1
messages crawl (each publish rewrites the whole store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import Mosquitto


def quiet_broker(directory: Path) -> Mosquitto:
    broker = Mosquitto(directory)
    text = broker.config.read_text()
    for line in ("persistence true", "autosave_interval 1", "autosave_on_changes true"):
        text = text.replace(line + "\n", "")
    broker.config.write_text(text)
    return broker


@pytest.fixture
def quiet_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = quiet_broker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()

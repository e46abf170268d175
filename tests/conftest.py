import os

import pytest

from tests.brokers import mosquitto
from tests.kafka_brokers import (
    add_kafka_option,
    kafka_broker,
    kafka_mock_cluster,
    private_kafka_broker,
    real_kafka,
)
from tests.postgres import pg_schema

__all__ = [
    "kafka_broker", "kafka_mock_cluster", "mosquitto", "pg_schema", "private_kafka_broker",
    "real_kafka",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_kafka_option(parser)

# No test context serves a web UI unless the test asks for one (conf ui_enabled=True,
# ui_port=0): as Spark's own suites set spark.ui.enabled=false. See aiostream_engine/ui.
os.environ["AIOSTREAM_UI_ENABLED"] = "false"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

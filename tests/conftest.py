import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import mosquitto
from tests.dask_cluster import DaskCluster
from tests.kafka_brokers import (
    add_kafka_option,
    kafka_broker,
    kafka_mock_cluster,
    private_kafka_broker,
    real_kafka,
)
from tests.masters import resolve_master
from tests.postgres import pg_schema
from tests.private_postgres import private_pg_schema, private_postgres

__all__ = [
    "kafka_broker", "kafka_mock_cluster", "mosquitto", "pg_schema", "private_kafka_broker",
    "private_pg_schema", "private_postgres", "real_kafka",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_kafka_option(parser)

# No test context serves a web UI unless the test asks for one (conf ui_enabled=True,
# ui_port=0): as Spark's own suites set spark.ui.enabled=false. See aiostream_engine/ui.
os.environ["AIOSTREAM_UI_ENABLED"] = "false"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A `dask scheduler` and two `dask worker` processes on loopback, for the session."""
    cluster = DaskCluster(Path(tmp_path_factory.mktemp("dask-cluster")), workers=2)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def master(request: pytest.FixtureRequest) -> str:
    """The master a test parametrized with ``indirect=["master"]`` runs on; ``dask-local[2]``
    is the session's two-worker cluster (see ``tests/dask_cluster.py``)."""
    return resolve_master(request, str(request.param))

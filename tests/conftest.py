import pytest

from tests.brokers import mosquitto
from tests.postgres import pg_schema

__all__ = ["mosquitto", "pg_schema"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

import pytest


@pytest.fixture(params=["noida-db", "apache-kafka"])
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """The bootstrap address of each broker a test runs against: the session's noida-db,
    and a real Apache Kafka when one is given (``--kafka-bootstrap``; else that variant is
    skipped, saying so)."""
    if request.param == "noida-db":
        return str(request.getfixturevalue("kafka_broker").bootstrap)
    return str(request.getfixturevalue("real_kafka"))

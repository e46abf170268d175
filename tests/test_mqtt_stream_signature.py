"""``ssc.mqtt_stream`` lists its options as keyword parameters (what an IDE and a type
checker show) and forwards each to the receiver; left at None, the receiver's default."""

from __future__ import annotations

import inspect

import pytest

from aiostream_engine import StreamingContext
from aiostream_engine.sources.mqtt import MqttReceiver


def test_every_receiver_option_is_a_keyword_parameter() -> None:
    parameters = inspect.signature(StreamingContext.mqtt_stream).parameters
    assert not [p for p in parameters.values() if p.kind is p.VAR_KEYWORD]
    receiver = inspect.signature(MqttReceiver.__init__).parameters
    options = {name for name, p in receiver.items() if p.kind is p.KEYWORD_ONLY}
    assert options <= set(parameters), sorted(options - set(parameters))
    assert {"num_receivers"} <= set(parameters)


def test_options_reach_the_receiver_and_none_keeps_its_default() -> None:
    ssc = StreamingContext(1.0, master="local")
    stream = ssc.mqtt_stream(
        "127.0.0.1", 18830, "sensors/#", qos=0, client_id="ported", keepalive=7,
        protocol="3.1.1", max_inflight=10, decoder="text",
    )
    receiver = stream.receiver  # type: ignore[attr-defined]
    assert (receiver.qos, receiver.client_id, receiver.keepalive, receiver.protocol) == (
        0, "ported", 7, "3.1.1"
    )
    assert receiver.max_inflight == 10
    default = inspect.signature(MqttReceiver.__init__).parameters["max_block_records"].default
    assert receiver.max_block_records == default
    shared = ssc.mqtt_stream("127.0.0.1", 18830, ["a", "b"], num_receivers=2, shared_group="g")
    assert len(shared.receivers) == 2  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="shared_group"):
        ssc.mqtt_stream("127.0.0.1", 18830, "a", num_receivers=2)

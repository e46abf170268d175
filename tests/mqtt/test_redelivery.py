"""RedeliveryFilter: the leading redeliveries of a new connection are dropped, nothing else."""

from __future__ import annotations

from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter


def test_leading_redeliveries_are_dropped_until_the_first_new_message() -> None:
    f = RedeliveryFilter(window=10)
    f.remember([(1, "t", {"i": 1}), (2, "t", {"i": 2}), (3, "t", {"i": 3})])
    f.connected()
    assert f.is_redelivery(2, "t", {"i": 2})
    assert f.is_redelivery(3, "t", {"i": 3})
    assert not f.is_redelivery(4, "t", {"i": 4})  # new: ends the redeliveries
    assert not f.is_redelivery(1, "t", {"i": 1})  # a later repeat is a new message
    assert f.dropped == 2


def test_packet_id_topic_and_payload_must_all_match() -> None:
    f = RedeliveryFilter(window=10)
    f.remember([(7, "a", b"x")])
    for mid, topic, payload in [(8, "a", b"x"), (7, "b", b"x"), (7, "a", b"y")]:
        f.connected()
        assert not f.is_redelivery(mid, topic, payload)
    f.connected()
    assert f.is_redelivery(7, "a", b"x")


def test_nothing_is_dropped_without_a_new_connection_or_for_qos0() -> None:
    f = RedeliveryFilter(window=10)
    f.remember([(0, "t", 1)])  # QoS 0: no packet id, never redelivered
    f.remember([(5, "t", 1)])
    assert not f.is_redelivery(5, "t", 1)  # not connected again since
    f.connected()
    assert not f.is_redelivery(0, "t", 1)


def test_the_window_keeps_only_the_most_recent_messages() -> None:
    f = RedeliveryFilter(window=2)
    f.remember([(1, "t", 1), (2, "t", 2), (3, "t", 3)])
    f.connected()
    assert not f.is_redelivery(1, "t", 1)
    f.connected()
    assert f.is_redelivery(2, "t", 2) and f.is_redelivery(3, "t", 3)

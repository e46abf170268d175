"""socket_text_stream against a real TCP server on 127.0.0.1, on a ManualClock."""

from __future__ import annotations

import socket
import struct

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from aiostream_engine import ManualClock, StreamingContext, StreamingListener
from aiostream_engine.raw import LineCutter, UndecodableLine
from aiostream_engine.sources.socket import SocketTextReceiver
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio

HOST = "127.0.0.1"


async def listen(port: int = 0) -> SocketListener:
    listener = await anyio.create_tcp_listener(local_host=HOST, local_port=port)
    return listener.listeners[0]


def port_of(listener: SocketListener) -> int:
    return listener.extra(SocketAttribute.local_port)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


async def accept(listener: SocketListener) -> SocketStream:
    with anyio.fail_after(5):
        return await listener.accept()


async def until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    """Yield to the loop until ``condition()`` holds; the data travels over real loopback."""
    with anyio.move_on_after(5):
        while not condition():
            await anyio.sleep(0)
    assert condition(), f"timed out waiting for {what}"


def stored(ssc: StreamingContext, stream_id: int) -> int:
    return ssc._receiver_tracker.generators[stream_id].records_stored


def context(**conf: float) -> StreamingContext:
    return StreamingContext(1.0, master="local", clock=ManualClock(0.0), conf=conf or None)


class ErrorRecorder(StreamingListener):
    def __init__(self) -> None:
        self.errors: list[str] = []

    def on_receiver_error(self, event):  # type: ignore[no-untyped-def]
        self.errors.append(event.receiver_info.last_error)


async def test_lines_land_in_the_batch_they_arrived_before() -> None:
    async with await listen() as listener, context() as ssc:
        stream = ssc.socket_text_stream(HOST, port_of(listener))
        out = collect_batches(stream)
        await ssc.start()
        conn = await accept(listener)
        await conn.send(b"first line\nsecond\r\n")
        await until(lambda: stored(ssc, stream.id) == 2, "two lines stored")
        infos = await advance_batches(ssc, 1)
        await conn.send(b"caf\xc3")  # a character split across two segments
        await anyio.wait_all_tasks_blocked()
        await conn.send(b"\xa9\n\nthird\n")
        await until(lambda: stored(ssc, stream.id) == 5, "three more lines stored")
        infos += await advance_batches(ssc, 2)
        await conn.aclose()
    assert out == [(1.0, ["first line", "second"]), (2.0, ["café", "", "third"]), (3.0, [])]
    assert [i.stream_id_to_num_records for i in infos] == [{0: 2}, {0: 3}, {0: 0}]


async def test_invalid_utf8_lines_are_dead_letters_counted_and_reported() -> None:
    recorder = ErrorRecorder()
    async with await listen() as listener, context() as ssc:
        port = port_of(listener)
        ssc.add_streaming_listener(recorder)
        stream = ssc.socket_text_stream(HOST, port)
        out = collect_batches(stream)
        dead = collect_batches(stream.dead_letters())  # type: ignore[attr-defined]
        await ssc.start()
        conn = await accept(listener)
        await conn.send(b"before\n\xff\xfe bad\nafter\nlat\xe9n-1\nend\n")
        await until(lambda: stored(ssc, stream.id) == 5, "the five lines stored")
        infos = await advance_batches(ssc, 1)
        receiver = stream.receiver
        supervisor = ssc._receiver_tracker.supervisors[stream.id]
        await conn.aclose()
    assert out == [(1.0, ["before", "after", "end"])]
    assert dead == [(1.0, [
        UndecodableLine(b"\xff\xfe bad", "that is not valid UTF-8 (invalid start byte at byte 0)"),
        UndecodableLine(b"lat\xe9n-1", "that is not valid UTF-8 (invalid continuation byte at byte 3)"),
    ])]
    assert infos[0].stream_id_to_num_records == {stream.id: 3, stream.dead_letters().id: 2}  # type: ignore[attr-defined]
    assert receiver.invalid_lines == 2
    assert recorder.errors == [
        f"socket 127.0.0.1:{port}: skipped 2 line(s) (first: a line that is not valid "
        "UTF-8 (invalid start byte at byte 0))",
    ]
    assert supervisor.restarts == 0  # the receiver kept its connection


async def test_oversized_lines_are_dead_letters_with_bounded_memory() -> None:
    async with await listen() as listener, context() as ssc:
        receiver = SocketTextReceiver(HOST, port_of(listener), max_line_bytes=8)
        stream = ssc.receiver_stream(receiver)
        out = collect_batches(stream)
        dead = collect_batches(stream.dead_letters())  # type: ignore[attr-defined]
        await ssc.start()
        conn = await accept(listener)
        await conn.send(b"short\n0123456789")
        await anyio.wait_all_tasks_blocked()
        await conn.send(b"abcdef\n12345678\nlong one here\nok\n")
        await until(lambda: stored(ssc, stream.id) == 5, "five lines stored")
        await advance_batches(ssc, 1)
        await conn.aclose()
    assert out == [(1.0, ["short", "12345678", "ok"])]
    # The unterminated line is held to 10 bytes while it grows (unless TCP delivered it
    # whole in one read: a read is bounded anyway); the decoder makes it a dead letter.
    first, second = (d.line for d in dead[0][1])
    assert b"0123456789abcdef".startswith(first) and len(first) >= 9
    assert second == b"long one here"
    assert receiver.oversized_lines == 2
    assert receiver.invalid_lines == 0


def test_line_cutter_keeps_the_last_partial_line_and_bounds_oversized_ones() -> None:
    cutter = LineCutter(max_bytes=4)
    assert cutter.feed(b"ab\r\ncd\nlo") == (b"ab\r\ncd\n", 2)
    assert cutter.feed(b"ng!") == (b"", 0)
    assert cutter.feed(b"!\nx") == (b"long!!\n", 1)  # 6 bytes kept: over the limit of 4
    assert cutter.end() == (b"x\n", 1)
    assert LineCutter(4).end() == (b"", 0)
    too_long = LineCutter(4)
    too_long.feed(b"123456789")
    assert too_long.end() == (b"123456\n", 1)
    # Two bytes over: a kept prefix ending in "\r" is still over the limit once the
    # decoder strips it (one byte over would make it exactly the limit: a good line).
    with_cr = LineCutter(4)
    with_cr.feed(b"1234\r56")
    assert with_cr.end() == (b"1234\r5\n", 1)


async def test_server_closing_makes_the_receiver_reconnect() -> None:
    port = free_port()
    async with context(receiver_restart_delay=0.1) as ssc:
        stream = ssc.socket_text_stream(HOST, port)
        out = collect_batches(stream)
        supervisor = None
        async with await listen(port) as listener:
            await ssc.start()
            supervisor = ssc._receiver_tracker.supervisors[stream.id]
            conn = await accept(listener)
            await conn.send(b"one\ntwo\nno newline at the end")
            await conn.aclose()
            await until(lambda: supervisor.restarts == 1, "restart after the server closed")
        assert stored(ssc, stream.id) == 3
        async with await listen(port) as listener:
            ssc.clock.advance(0.15)  # past the backoff: 0.05..0.15 s on the context's clock
            conn = await accept(listener)
            await conn.send(b"three\n")
            await until(lambda: stored(ssc, stream.id) == 4, "a line after reconnecting")
            await advance_batches(ssc, 1)
            await conn.aclose()
    assert out == [(1.0, ["one", "two", "no newline at the end", "three"])]
    assert supervisor.restarts == 1


async def test_reset_connection_is_reported_and_reconnected() -> None:
    port = free_port()
    recorder = ErrorRecorder()
    async with context(receiver_restart_delay=0.1) as ssc:
        ssc.add_streaming_listener(recorder)
        stream = ssc.socket_text_stream(HOST, port)
        out = collect_batches(stream)
        async with await listen(port) as listener:
            await ssc.start()
            supervisor = ssc._receiver_tracker.supervisors[stream.id]
            conn = await accept(listener)
            await conn.send(b"before the reset\n")
            await until(lambda: stored(ssc, stream.id) == 1, "a line before the reset")
            linger_zero = struct.pack("ii", 1, 0)  # close with RST instead of FIN
            conn.extra(SocketAttribute.raw_socket).setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, linger_zero
            )
            await conn.aclose()
            await until(lambda: supervisor.restarts == 1, "restart after the reset")
            ssc.clock.advance(0.15)
            conn = await accept(listener)
            await conn.send(b"after\n")
            await until(lambda: stored(ssc, stream.id) == 2, "a line after reconnecting")
            await advance_batches(ssc, 1)
            await conn.aclose()
    assert out == [(1.0, ["before the reset", "after"])]
    assert recorder.errors[0] == (
        f"ConnectionError: connection to 127.0.0.1:{port} lost: "
        "ConnectionResetError: [Errno 104] Connection reset by peer"
    )


async def test_refused_connection_is_retried_with_backoff() -> None:
    port = free_port()
    recorder = ErrorRecorder()
    async with context(receiver_restart_delay=0.1) as ssc:
        ssc.add_streaming_listener(recorder)
        stream = ssc.socket_text_stream(HOST, port)
        out = collect_batches(stream)
        await ssc.start()
        supervisor = ssc._receiver_tracker.supervisors[stream.id]
        await until(lambda: supervisor.restarts == 1, "restart after a refused connection")
        async with await listen(port) as listener:
            ssc.clock.advance(0.15)
            conn = await accept(listener)
            await conn.send(b"hello\n")
            await until(lambda: stored(ssc, stream.id) == 1, "a line once the server is up")
            await advance_batches(ssc, 1)
            await conn.aclose()
    assert out == [(1.0, ["hello"])]
    assert recorder.errors[0] == (
        f"ConnectionError: cannot connect to 127.0.0.1:{port}: "
        f"ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', {port})"
    )


async def test_stop_closes_the_connection() -> None:
    async with await listen() as listener:
        async with context() as ssc:
            collect_batches(ssc.socket_text_stream(HOST, port_of(listener)))
            await ssc.start()
            conn = await accept(listener)
        with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
            await conn.receive()
        await conn.aclose()

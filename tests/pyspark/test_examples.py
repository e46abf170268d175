"""The PySpark ports in examples/pyspark_port run as scripts, against a real local socket or
directory, and print what Spark's own example programs print for the same input."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples" / "pyspark_port"
SEPARATOR = "-------------------------------------------"


@contextmanager
def line_server(lines: list[str]) -> Iterator[int]:
    """A TCP server on a free loopback port that sends ``lines`` to the first client and
    keeps the connection open until the test ends."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(30)
    done = threading.Event()

    def serve() -> None:
        try:
            connection, _ = server.accept()
        except OSError:  # closed before anyone connected
            return
        with connection:
            connection.sendall("".join(f"{line}\n" for line in lines).encode())
            done.wait(60)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        server.close()
        thread.join(10)


def run_example(
    script: str, *args: object, when_started: Callable[[], None] | None = None
) -> list[str]:
    """Run an example to its end; returns its stdout lines. ``when_started`` runs once the
    first batch has been printed (the stream is running)."""
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)},
    )
    assert process.stdout is not None
    out: list[str] = []
    try:
        for line in process.stdout:
            out.append(line.rstrip("\n"))
            if when_started is not None and line.startswith("Time: "):
                when_started()
                when_started = None
        assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return out


def batches(out: list[str]) -> list[list[Any]]:
    """The records of each batch ``pprint`` printed."""
    found: list[list[Any]] = []
    for line in out:
        if line.startswith("Time: "):
            found.append([])
        elif found and line and line != SEPARATOR and line != "...":
            found[-1].append(ast.literal_eval(line))
    return found


def test_network_wordcount() -> None:
    with line_server(["hello world hello", "world spark"]) as port:
        out = run_example("network_wordcount.py", "127.0.0.1", port, 2)
    totals: Counter[str] = Counter()
    for batch in batches(out):
        for word, count in batch:
            totals[word] += count
    assert totals == {"hello": 2, "world": 2, "spark": 1}


def test_stateful_network_wordcount_starts_from_the_initial_rdd() -> None:
    with line_server(["hello world hello", "world spark"]) as port:
        out = run_example("stateful_network_wordcount.py", "127.0.0.1", port, 2)
    printed = batches(out)
    assert sorted(printed[0]) in ([("hello", 1), ("world", 1)],  # nothing arrived yet
                                  [("hello", 3), ("spark", 1), ("world", 3)])
    assert sorted(printed[-1]) == [("hello", 3), ("spark", 1), ("world", 3)]


def test_recoverable_network_wordcount_runs_again_from_its_checkpoint(tmp_path: Path) -> None:
    checkpoint, output = tmp_path / "checkpoint", tmp_path / "counts.txt"
    with line_server(["a b hello", "hello c world"]) as port:
        first = run_example(
            "recoverable_network_wordcount.py", "127.0.0.1", port, checkpoint, output, 2
        )
    written = output.read_text().splitlines()
    assert first[0] == "Creating new context"
    assert "Dropped 3 word(s) totally" in first  # a, b and c, through the broadcast list
    counted = [line for line in written if "[(" in line]
    assert len(counted) == 1 and sorted(ast.literal_eval(counted[0].split(" ", 5)[5])) == [
        ("hello", 2), ("world", 1)
    ]
    assert all(line.startswith("Counts at time ") for line in written)
    with line_server(["c again"]) as port:
        second = run_example(
            "recoverable_network_wordcount.py", "127.0.0.1", port, checkpoint, output, 2
        )
    assert "Creating new context" in second  # our getOrCreate rebuilds the graph from code
    assert output.read_text().splitlines()[: len(written)] == written  # appended, kept
    assert any("('again', 1)" in line for line in output.read_text().splitlines())
    assert "Dropped 1 word(s) totally" in second


def test_queue_stream() -> None:
    out = run_example("queue_stream.py", 2)
    printed = [sorted(batch) for batch in batches(out) if batch]
    assert printed == [[(k, 100) for k in range(10)]] * 2


def test_file_wordcount(tmp_path: Path) -> None:
    def move_in() -> None:
        staging = tmp_path / ".words.txt.tmp"
        staging.write_text("to be or not\nto be\n")
        os.rename(staging, tmp_path / "words.txt")

    out = run_example("file_wordcount.py", tmp_path, 2, when_started=move_in)
    counted = [sorted(batch) for batch in batches(out) if batch]
    assert counted == [[("be", 2), ("not", 1), ("or", 1), ("to", 2)]]

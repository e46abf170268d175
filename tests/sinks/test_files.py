"""FileSink: one file per batch and partition, exact contents, replaced when re-run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiostream_engine.sinks import FileSink
from tests.sinks.streams import write_batches

pytestmark = pytest.mark.anyio


def contents(directory: Path) -> dict[str, str]:
    """Every file in ``directory`` (dot-files included: none may be left behind)."""
    return {name: (directory / name).read_text() for name in sorted(os.listdir(directory))}


async def test_json_lines_one_file_per_batch_and_partition(tmp_path: Path) -> None:
    out = tmp_path / "out"
    batches: list[list[dict[str, object]]] = [
        [{"device": "a", "t": 1.5}, {"device": "b", "t": None}, {"device": "c", "t": 3}],
        [{"device": "d", "t": [1, 2]}],
    ]
    async with FileSink(out, format="json", prefix="readings") as sink:
        await write_batches(sink, batches)
    assert contents(out) == {
        "readings-1000-part-00000.jsonl": '{"device":"a","t":1.5}\n{"device":"b","t":null}\n',
        "readings-1000-part-00001.jsonl": '{"device":"c","t":3}\n',
        "readings-2000-part-00000.jsonl": '{"device":"d","t":[1,2]}\n',
        "readings-2000-part-00001.jsonl": "",
    }


async def test_text_lines_and_a_rerun_batch_replaces_its_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with FileSink(out) as sink:
        await write_batches(sink, [[("a", 1), ("b", 2)], [("c", 3), ("d", 4)]])
    assert contents(out) == {
        "batch-1000-part-00000.txt": "('a', 1)\n",
        "batch-1000-part-00001.txt": "('b', 2)\n",
        "batch-2000-part-00000.txt": "('c', 3)\n",
        "batch-2000-part-00001.txt": "('d', 4)\n",
    }
    # The same batch times again (a recovered job): same files, new contents, no additions.
    async with FileSink(out) as sink:
        await write_batches(sink, [["x", "y"], ["z"]])
    assert contents(out) == {
        "batch-1000-part-00000.txt": "x\n",
        "batch-1000-part-00001.txt": "y\n",
        "batch-2000-part-00000.txt": "z\n",
        "batch-2000-part-00001.txt": "",
    }


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format must be 'text' or 'json', got 'csv'"):
        FileSink(tmp_path, format="csv")  # type: ignore[arg-type]

"""The command line of the standalone benchmarks (state_cost, window_cost, mqtt_ingest,
receiver_feed): run, print the table, and unless ``--quick`` save it with its JSON in
bench/results/."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

RESULTS = Path(__file__).resolve().parent / "results"


def run_benchmark(
    name: str,
    description: str,
    quick_help: str,
    run: Callable[..., dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """``options`` adds a benchmark's own options; ``run`` gets them as keywords after
    ``quick``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=f"{quick_help}; print only")
    if options is not None:
        options(parser)
    args = vars(parser.parse_args())
    quick = args.pop("quick")
    result = run(quick, **args)
    table = markdown(result)
    print(table)
    if not quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
        (RESULTS / f"{name}.md").write_text(table)


def run_cost_benchmark(
    name: str,
    description: str,
    quick_help: str,
    main: Callable[[bool], Awaitable[dict[str, Any]]],
    markdown: Callable[[dict[str, Any]], str],
) -> None:
    run_benchmark(name, description, quick_help, lambda quick: anyio.run(main, quick), markdown)


def cost_report(module_doc: str | None, started: float, rows: list[Any], **fields: Any) -> dict[str, Any]:
    """The JSON report of a cost benchmark: its first docstring paragraph, the given fields,
    the Python and machine it ran on, its rows and its run time since ``started``
    (``time.perf_counter()``)."""
    return {
        "description": (module_doc or "").split("\n\n")[0],
        **fields,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
        "runtime_s": round(time.perf_counter() - started, 1),
    }

"""``python -m bench all [--quick]``: every benchmark, peers in the same run.

Results go to bench/results/ (``--quick``: bench/results/quick/, a smoke test that
finishes in under 3 minutes). ``python -m bench report`` re-renders tables and plots
from the saved JSON. ``python -m bench dask [--quick] [--workloads W1 ...]``: W1-W3 on
dask-local[2], local[2] and PySpark (``bench.dask_suite``); ``python -m bench dask-report``
re-renders its table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import dask_suite
from .report import write
from .suite import Settings, run_all

RESULTS = Path(__file__).resolve().parent / "results"


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("command", choices=["all", "report", "dask", "dask-report"])
    parser.add_argument("--quick", action="store_true", help="smoke test, under 3 minutes")
    parser.add_argument("--out", type=Path, help="results directory")
    parser.add_argument("--workloads", nargs="+", default=["W1", "W2", "W3"],
                        choices=["W1", "W2", "W3"], help="dask: the workloads to run now")
    args = parser.parse_args(argv)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    if args.command.startswith("dask"):
        return _dask(args.command == "dask", args.quick, args.workloads, out)
    if args.command == "report":
        throughput = json.loads((out / "throughput.json").read_text())
        latency = json.loads((out / "latency.json").read_text())
        data = {**throughput, "latency": latency["latency"]}
    else:
        data = run_all(Settings.of(args.quick), _say)
    for path in write(data, out):
        _say(f"wrote {path}")
    print((out / "throughput.md").read_text())
    print((out / "latency.md").read_text())
    return 0


def _dask(measure: bool, quick: bool, workloads: list[str], out: Path) -> int:
    saved = dask_suite.load(out)
    if saved is not None and saved["settings"]["quick"] != quick:
        saved = None  # another mode's figures: not comparable
    if measure:
        data = dask_suite.run(quick, workloads, saved, _say)
    elif saved is None:
        raise SystemExit(f"no saved dask_throughput.json in {out}")
    else:
        data = saved
    for path in dask_suite.write(data, out):
        _say(f"wrote {path}")
    print((out / "dask_throughput.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

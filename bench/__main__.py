"""``python -m bench all [--quick]``: every benchmark, peers in the same run.

Results go to bench/results/ (``--quick``: bench/results/quick/, a smoke test that
finishes in under 3 minutes). ``python -m bench report`` re-renders tables and plots
from the saved JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .report import write
from .suite import Settings, run_all

RESULTS = Path(__file__).resolve().parent / "results"


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("command", choices=["all", "report"])
    parser.add_argument("--quick", action="store_true", help="smoke test, under 3 minutes")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
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


if __name__ == "__main__":
    sys.exit(main())

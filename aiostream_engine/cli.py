"""The command line: ``aiostream-engine demo`` and ``aiostream-engine conf``."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from .conf import StreamingConf


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiostream-engine",
        description="An asyncio-native micro-batch stream processing engine (Spark Streaming's "
        "DStream model, no JVM).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the IoT demo on the built-in sensor simulator",
        description="Simulated devices emit JSON readings; the pipeline parses them (counting "
        "and dropping broken ones), keys by device, reduces per batch, and prints the hottest "
        "devices and each batch's statistics. Ctrl-C stops it gracefully.",
    )
    demo.add_argument("--duration", type=_non_negative_float, default=10.0,
                      help="seconds to run, then stop gracefully; 0 runs until Ctrl-C (default 10)")
    demo.add_argument("--rate", type=_positive(float), default=2000.0,
                      help="readings per second from all devices together (default 2000)")
    demo.add_argument("--devices", type=_positive(int), default=50,
                      help="number of simulated devices (default 50)")
    demo.add_argument("--batch-interval", type=_positive(float), default=1.0,
                      help="seconds per micro-batch (default 1.0)")
    demo.add_argument("--block-interval", type=_positive(float), default=None,
                      help="seconds between cuts of the receiver's buffer into blocks "
                           "(default: 0.2, or the batch interval when that is shorter)")
    demo.add_argument("--master", default="local[2]",
                      help="executor: local, local[N] or local[*] (default local[2])")
    demo.add_argument("--malformed-fraction", type=float, default=0.01,
                      help="share of readings sent as broken JSON (default 0.01)")
    demo.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    demo.add_argument("--window", type=_non_negative_float, default=30.0,
                      help="seconds of the sliding per-device view, every second; 0: off "
                           "(default 30)")
    demo.add_argument("--ui-port", type=int, default=4040,
                      help="port of the web UI (the next free one when taken; 0: any); the UI "
                           "is on when the ui extra is installed (default 4040)")
    demo.add_argument("--source", choices=["simulator", "kafka"], default="simulator",
                      help="simulator: readings straight from the simulated devices; kafka: "
                           "through a Kafka topic, read by the direct stream (default simulator)")
    demo.add_argument("--bootstrap", default=None,
                      help="Kafka bootstrap servers HOST:PORT for --source kafka")
    demo.add_argument("--topic", default=None,
                      help="Kafka topic for --source kafka (default aiostream-demo)")
    demo.add_argument("--backpressure", action="store_true",
                      help="bound what the source sends to what the job processes (a PID "
                           "rate controller, updated every batch); with a --rate above that "
                           "(or --work) the statistics show the bound and what waits")
    demo.add_argument("--work", type=_non_negative_float, default=0.0,
                      help="microseconds of CPU each reading costs the job (default 0); with "
                           "--backpressure, e.g. --rate 20000 --work 200 overloads local[2]")
    demo.add_argument("--initial-rate", type=_non_negative_float, default=0.0,
                      help="with --backpressure, readings/s before the first estimate "
                           "(default 0: the first batch takes what is offered)")
    demo.add_argument("--checkpoint-dir", default=None,
                      help="checkpoint directory of the window (default: a temporary one)")

    commands.add_parser("conf", help="print the configuration keys, defaults and Spark keys")
    return parser


def _run_async(func: Any) -> Any:
    """``anyio.run`` on uvloop when it is installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return anyio.run(func)
    return anyio.run(func, backend_options={"use_uvloop": True})


def conf_table() -> str:
    rows = [("key", "default", "Spark key", "meaning")]
    rows += [(key, repr(default), spark or "-", doc) for key, default, spark, doc in
             StreamingConf.describe()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  " + row[3]
        for row in rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and args.source == "kafka" and not args.bootstrap:
        parser.error("--source kafka needs --bootstrap HOST:PORT")
    if args.command == "conf":
        print(conf_table())
        return 0
    from .demo import run_demo

    demo = functools.partial(
        run_demo,
        duration=args.duration,
        rate=args.rate,
        devices=args.devices,
        batch_interval=args.batch_interval,
        block_interval=args.block_interval,
        master=args.master,
        seed=args.seed,
        malformed_fraction=args.malformed_fraction,
        window=args.window,
        checkpoint_dir=args.checkpoint_dir,
        ui_port=args.ui_port,
        source=args.source,
        bootstrap=args.bootstrap,
        topic=args.topic,
        backpressure=args.backpressure,
        work=args.work,
        initial_rate=args.initial_rate,
    )
    try:
        _run_async(demo)
    except KeyboardInterrupt:  # a second Ctrl-C before the signal handler was installed
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

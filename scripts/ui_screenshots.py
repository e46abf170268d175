"""Screenshots of the streaming UI for the README (docs/ui-streaming.png, docs/ui-batch.png).

Runs the IoT demo pipeline (simulated sensors, parse, per-device reduce, a sliding window)
with the web UI on a free loopback port for ``--seconds`` seconds, then has Debian's
chromium (headless, through Playwright, as the page tests drive it) load the Streaming
page and the newest batch's page and save them. From the repository's root::

    python -m scripts.ui_screenshots [--seconds 40] [--out docs]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import anyio

from aiostream_engine import StreamingContext
from aiostream_engine.demo import attach_demo
from tests.ui.browser import browser_page


async def capture(seconds: float, out: Path) -> None:
    with tempfile.TemporaryDirectory() as checkpoints:
        conf = {"ui_enabled": True, "ui_port": 0, "app_name": "iot-demo"}
        async with StreamingContext(1.0, master="local[2]", conf=conf) as ssc:
            ssc.checkpoint(checkpoints)
            readings = ssc.simulator_stream(num_devices=50, rate=2000, seed=1, malformed_fraction=0.01)
            attach_demo(ssc, readings, io.StringIO(), window=10)
            await ssc.start()
            print(f"UI at {ssc.ui_url}; running {seconds:g} s", flush=True)
            for step in range(int(seconds)):
                await anyio.sleep(1)
                if step % 10 == 9:
                    print(f"  {step + 1} s", flush=True)
            async with browser_page(viewport={"width": 1280, "height": 900}) as (page, problems):
                await page.goto(ssc.ui_url)
                await page.wait_for_selector("#completed-batches tr[data-batch]")
                await page.wait_for_timeout(1500)
                await page.screenshot(path=str(out / "ui-streaming.png"), full_page=False)
                await page.click("#completed-batches tr[data-batch] a")
                await page.wait_for_selector("#operations tr")
                await page.wait_for_timeout(500)
                await page.screenshot(path=str(out / "ui-batch.png"), full_page=True)
            await ssc.stop(graceful=False)
    if problems:
        raise SystemExit(f"the pages logged errors: {problems}")
    print(f"wrote {out / 'ui-streaming.png'} and {out / 'ui-batch.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args()
    args.out.mkdir(exist_ok=True)
    anyio.run(capture, args.seconds, args.out)


if __name__ == "__main__":
    main()

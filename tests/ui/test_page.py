"""The page in a real browser: Debian's chromium, headless, driven by Playwright.

It loads with no console error, the batch tables fill as batches complete (live, without
reloading), the charts draw, a batch page opens from its row, and user text (a stream name
and an error that are HTML and script) shows as text: no script of it ever runs. The page's
Content-Security-Policy stays on (so waits use locators, not evaluated strings).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from playwright.async_api import expect

from .browser import CHROMIUM, browser_page
from .scenario import ERROR, RECEIVER_ERROR, RECEIVER_NAME, Scenario

pytestmark = pytest.mark.anyio

if not os.path.exists(CHROMIUM):  # .ci/run installs it; say so rather than skip quietly
    pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)


async def rows(page: Any, table: str) -> list[str]:
    return await page.eval_on_selector_all(f"#{table} tr[data-batch]", "rs => rs.map(r => r.dataset.batch)")


async def test_page_goes_live_opens_a_batch_and_runs_no_user_script() -> None:
    async with Scenario(with_receiver=True) as run, browser_page() as (page, problems):
        await page.goto(run.ssc.ui_url)
        await page.wait_for_selector("#live.on")  # the live feed is connected
        assert await rows(page, "completed-batches") == []

        await run.first_batch_done()
        await page.wait_for_selector('#completed-batches tr[data-batch="1000"]')
        await run.running_and_queued()
        await expect(page.locator("#active-batches tr[data-batch]")).to_have_count(2)
        assert await rows(page, "active-batches") == ["3000", "2000"]
        await run.all_done()  # batch 3.0 failed: it stays active, waiting for its retry
        await expect(page.locator("#completed-batches tr[data-batch]")).to_have_count(2)
        assert await rows(page, "active-batches") == ["3000"]
        await expect(page.locator("#streams")).to_contain_text(RECEIVER_ERROR)

        # The charts drew: a line per series and histogram bars, the batch interval marked.
        assert await page.locator("svg.timeline polyline").count() >= 5
        assert await page.locator("svg.histogram rect.bar").count() >= 4
        assert await page.locator("svg.timeline line.threshold").count() == 3

        # User text is shown as text.
        await expect(page.locator("#active-batches")).to_contain_text("processing")
        streams = await page.inner_text("#streams")
        assert RECEIVER_NAME in streams and RECEIVER_ERROR in streams
        assert await page.locator("#active-batches img, #streams script, #streams b").count() == 0
        assert await page.evaluate("window.__pwned") is None

        # The failed batch's page, opened from its row.
        await page.click('#active-batches tr[data-batch="3000"] a')
        await page.wait_for_url("**/batch?id=3000")
        await page.wait_for_selector("#operations tr")
        operations = await page.inner_text("#operations")
        assert "failed" in operations and ERROR in operations
        assert "waiting" in operations  # the next outputs wait behind the failed one's retry
        inputs = await page.inner_text("#inputs")
        assert "queue_stream" in inputs and RECEIVER_NAME in inputs
        assert await page.inner_text("#batch-time") != "..."
        assert await page.evaluate("window.__pwned") is None
        await page.click("a.back")
        await page.wait_for_selector('#active-batches tr[data-batch="3000"]')
    assert problems == []

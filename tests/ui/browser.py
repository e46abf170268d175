"""Debian's chromium, headless, driven by Playwright for Python (its own browser download
cannot work here): for the page tests and scripts/ui_screenshots.py."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from playwright.async_api import async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@asynccontextmanager
async def browser_page(**options: Any) -> AsyncIterator[tuple[Any, list[str]]]:
    """A fresh headless chromium (its own profile directory, removed after) and one page;
    the list collects console errors and uncaught page errors. ``options`` go to
    Playwright's ``launch_persistent_context`` (a ``viewport``)."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="aiostream-chromium-") as profile:
        async with async_playwright() as p:
            context = await p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **options,
            )
            try:
                page = await context.new_page()
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                yield page, problems
            finally:
                await context.close()

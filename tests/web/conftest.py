"""A real HTTP server (uvicorn on a loopback port) around a web app, and a real browser.

Fixtures: ``served_app`` (serve any ASGI app, get its base URL), ``browser`` (Debian's
headless chromium driven by Playwright, fake media devices), ``page`` (a fresh context
and page in it). A test module widens chromium's arguments by overriding
``browser_args`` (e.g. ``--use-file-for-fake-audio-capture=...``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services import free_port, missing

CHROMIUM = Path("/usr/bin/chromium")
#: fake camera and microphone, no permission prompts
CHROMIUM_ARGS = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")

#: serve(app) -> its base URL ("http://127.0.0.1:PORT"); stopped after the test
ServeApp = Callable[[Any], Awaitable[str]]


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` over real HTTP; yields a client pointed at it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers nothing to await
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield client
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def served_app() -> AsyncIterator[ServeApp]:
    """``await served_app(app)`` serves an ASGI app on a loopback port; its base URL."""
    async with AsyncExitStack() as stack:

        async def serve(app: Any) -> str:
            client = await stack.enter_async_context(serving(app))
            return str(client.base_url).rstrip("/")

        yield serve


@pytest.fixture
def browser_args() -> list[str]:
    """Chromium's command-line arguments (override in a module to add some)."""
    return list(CHROMIUM_ARGS)


@pytest.fixture
def chromium() -> Path:
    """Debian's chromium binary (skipped, or failed under CALLSTATE_REQUIRE_SERVICES=1, if absent)."""
    if not CHROMIUM.exists():
        missing("chromium")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path, browser_args: list[str]) -> AsyncIterator[Browser]:
    """Debian's chromium, headless, driven by Playwright (which never downloads one)."""
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(chromium), args=browser_args)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (its own storage), closed after the test."""
    ctx = await browser.new_context()
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    """A page in ``context``; its console and errors are printed (shown when a test fails)."""
    tab = await context.new_page()
    tab.on("console", lambda m: print(f"console.{m.type}: {m.text}"))
    tab.on("pageerror", lambda e: print(f"pageerror: {e}"))
    return tab

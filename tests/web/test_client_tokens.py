"""callstate.js and its tokens in headless Chromium: refreshed before they expire, and the
server's JSON error codes reaching the page."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

import callstate
from callstate.testing import FakeClock

from .callapp import call_app
from .conftest import ServeApp
from .test_client_resume import SECRET, events


async def test_the_token_is_refreshed_before_it_expires_and_resumes_after_the_first_expired(
    served_app: ServeApp, tmp_path: Path, page: Page
) -> None:
    """With refreshAt 0.3 of a 10 s token the page swaps it via /v1/token/refresh; once the
    first token has expired, a reload still resumes with the refreshed one."""
    clock = FakeClock()
    keeper = callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET, clock=clock)
    async with keeper:
        app, agent = call_app(keeper, token_ttl=10)
        await page.goto(await served_app(app) + "/?manual")
        await page.evaluate("window.mount({ refreshAt: 0.3 })")
        first = await page.evaluate("window.client.token")
        clock.advance(5)  # the refresh (3 s from now, by the page's timer) is issued at +5
        await events(page, "token", 2)
        second = await page.evaluate("window.client.token")
        clock.advance(7)  # +12: the first token expired at +10, the second lasts to +15
        expired = await keeper.preflight(first)
        await page.reload()
        await page.evaluate("window.mount()")
        (resumed,) = await events(page, "resumed")
        await agent.close()
    assert second != first
    assert "expired" == expired.status
    assert 2 == resumed["epoch"]
    assert "http /callstate/v1/token/refresh" in agent.requests


async def test_a_refused_request_reaches_the_page_as_an_error_with_the_server_code(
    served_app: ServeApp, tmp_path: Path, page: Page
) -> None:
    """A server that does not start calls answers 404 bad_request; the page gets an
    `error` event with that code and status, and start() rejects with it."""
    async with callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET) as keeper:
        app, _ = call_app(keeper, allow_start=False)
        await page.goto(await served_app(app) + "/")
        (error,) = await events(page, "error")
        started = await page.evaluate("window.started")
    assert ("bad_request", 404) == (error["code"], error["status"])
    assert {"failed": "bad_request"} == started
    assert "idle" == await page.evaluate("window.client.state")

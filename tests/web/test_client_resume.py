"""callstate.js in headless Chromium against a real web app and store: start, reload,
a duplicated tab, an expired call, and route changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page

import callstate
from callstate.testing import FakeClock

from .callapp import Agent, call_app
from .conftest import ServeApp

SECRET = b"web-client-test-secret-0123456789"


@pytest.fixture
async def keeper(tmp_path: Path) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET) as k:
        yield k


async def events(page: Page, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The page's events of ``kind`` once there are ``count`` of them."""
    await page.wait_for_function(
        f"window.events && window.events.filter(e => e.type === {kind!r}).length >= {count}"
    )
    return [e for e in await page.evaluate("window.events") if e["type"] == kind]


async def open_call(
    served_app: ServeApp, keeper: callstate.Keeper, page: Page
) -> tuple[str, Agent, dict[str, Any]]:
    app, agent = call_app(keeper)
    base = await served_app(app)
    await page.goto(base + "/")
    (fresh,) = await events(page, "fresh")
    return base, agent, fresh


async def test_a_first_visit_starts_fresh_then_a_reload_resumes_the_same_session(
    served_app: ServeApp, keeper: callstate.Keeper, page: Page, tmp_path: Path
) -> None:
    """Reload resumes the tab's call at epoch+1 in one request (the resume is the check),
    then the transport."""
    _, agent, fresh = await open_call(served_app, keeper, page)
    assert ("new", 1) == (fresh["reason"], fresh["epoch"])
    agent.requests.clear()
    await page.reload()
    (resumed,) = await events(page, "resumed")
    await page.screenshot(path=tmp_path / "resumed.png")
    assert (fresh["sessionId"], 2) == (resumed["sessionId"], resumed["epoch"])
    assert 2 == (await keeper.load(fresh["sessionId"])).epoch
    assert [
        "http /callstate/v1/resume",
        "websocket /ws",
    ] == agent.seen("http /callstate/v1/", "websocket")
    assert "open" == await page.evaluate("window.client.state")
    await agent.close()


async def test_a_duplicated_tab_is_told_the_call_is_active_and_may_take_it_over(
    served_app: ServeApp, keeper: callstate.Keeper, page: Page
) -> None:
    """A copy of the tab (same sessionStorage) gets `active` from its one resume request,
    not the call; takeover() moves the call to it and the first tab hears `superseded`."""
    _, agent, fresh = await open_call(served_app, keeper, page)
    agent.requests.clear()
    async with page.expect_popup() as opened:
        await page.evaluate(
            "window.open(location.href)"
        )  # copies sessionStorage, as duplicating does
    twin = await opened.value
    (active,) = await events(twin, "active")
    assert (fresh["sessionId"], "session_active") == (active["sessionId"], active["code"])
    assert 1 == (await keeper.load(fresh["sessionId"])).epoch
    assert [] == await events(twin, "resuming", 0)
    assert ["http /callstate/v1/resume"] == agent.seen("http /callstate/v1/", "websocket")
    await twin.evaluate("window.client.takeover()")
    (resumed,) = await events(twin, "resumed")
    (superseded,) = await events(page, "superseded")
    assert (2, fresh["sessionId"]) == (resumed["epoch"], superseded["sessionId"])
    assert "closed" == await page.evaluate("window.client.state")
    await agent.close()


async def test_a_caller_id_is_shared_across_tabs_and_a_token_is_not(
    served_app: ServeApp, keeper: callstate.Keeper, context: BrowserContext, page: Page
) -> None:
    """A new tab (no opener) has the same caller id in localStorage but starts its own call."""
    base, agent, fresh = await open_call(served_app, keeper, page)
    other = await context.new_page()
    await other.goto(base + "/")
    (second,) = await events(other, "fresh")
    callers = [await p.evaluate("window.client.caller") for p in (page, other)]
    assert callers[0] == callers[1]
    assert fresh["sessionId"] != second["sessionId"]
    await agent.close()


async def test_an_expired_call_is_reported_and_a_fresh_one_starts(
    served_app: ServeApp, tmp_path: Path, page: Page
) -> None:
    """Past the resume window a reload's resume is refused with preflight's `expired`:
    the page gets `expired`, then `fresh` with a new session."""
    clock = FakeClock()
    keeper = callstate.Keeper(
        f"sqlite:///{tmp_path}/cs.db", secret=SECRET, clock=clock, resume_window=60
    )
    async with keeper:
        _, agent, fresh = await open_call(served_app, keeper, page)
        await agent.close()
        clock.advance(120)
        agent.requests.clear()
        await page.reload()
        (expired,) = await events(page, "expired")
        (again,) = await events(page, "fresh")
        seen = agent.seen("http /callstate/v1/", "websocket")
        await agent.close()
    assert ["http /callstate/v1/resume", "http /callstate/v1/start", "websocket /ws"] == seen
    assert fresh["sessionId"] == expired["sessionId"]
    assert ("expired", 1) == (again["reason"], again["epoch"])
    assert fresh["sessionId"] != again["sessionId"]


async def test_a_route_change_checks_the_call_before_any_connection(
    served_app: ServeApp, keeper: callstate.Keeper, page: Page
) -> None:
    """A widget remounted by a route change resumes (the check) before it connects."""
    _, agent, fresh = await open_call(served_app, keeper, page)
    agent.requests.clear()
    await page.evaluate("window.remount('/billing')")
    (resumed,) = await events(page, "resumed")
    assert [
        "http /callstate/v1/resume",
        "websocket /ws",
    ] == agent.seen("http /callstate/v1/", "websocket")
    assert (fresh["sessionId"], 2) == (resumed["sessionId"], resumed["epoch"])
    assert "/billing" == await page.evaluate("location.pathname")
    await agent.close()


async def test_a_route_change_with_the_call_open_only_checks_it(
    served_app: ServeApp, keeper: callstate.Keeper, page: Page
) -> None:
    """pushState on a live call runs one preflight and neither resumes nor reconnects."""
    _, agent, fresh = await open_call(served_app, keeper, page)
    agent.requests.clear()
    await page.evaluate("history.pushState({}, '', '/settings')")
    await page.wait_for_function(
        "performance.getEntriesByName(location.origin + '/callstate/v1/preflight').length > 0"
    )
    assert ["http /callstate/v1/preflight"] == agent.seen("http /callstate/v1/", "websocket")
    assert (1, "open") == (
        (await keeper.load(fresh["sessionId"])).epoch,
        await page.evaluate("window.client.state"),
    )
    await agent.close()

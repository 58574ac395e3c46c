"""callstate.js across a network gap in headless Chromium: messages sent while offline
wait in order and arrive once, over the same transport or after a reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page

import callstate

from .callapp import Agent, call_app
from .conftest import ServeApp
from .test_client_resume import SECRET, events


@pytest.fixture
async def keeper(tmp_path: Path) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET) as k:
        yield k


async def _call(served_app: ServeApp, keeper: callstate.Keeper, page: Page) -> tuple[Agent, str]:
    app, agent = call_app(keeper)
    await page.goto(await served_app(app) + "/")
    (fresh,) = await events(page, "fresh")
    return agent, str(fresh["sessionId"])


async def _send(page: Page, *numbers: int) -> None:
    await page.evaluate("(ns) => ns.forEach((n) => window.client.send({ n }))", list(numbers))


async def _arrived(page: Page, agent: Agent, count: int) -> None:
    async with asyncio.timeout(20):
        while len(agent.received) < count:
            await page.wait_for_timeout(20)


async def test_messages_sent_offline_wait_and_arrive_once_in_order(
    served_app: ServeApp, keeper: callstate.Keeper, context: BrowserContext, page: Page
) -> None:
    """Offline (CDP network emulation) queues sends; online flushes them after the
    earlier ones, each exactly once, numbered 1..n."""
    agent, sid = await _call(served_app, keeper, page)
    await _send(page, 1, 2)
    await _arrived(page, agent, 2)
    await context.set_offline(True)
    await events(page, "offline")
    await _send(page, 3, 4, 5)
    assert (3, "waiting") == (
        await page.evaluate("window.client.pending"),
        await page.evaluate("window.client.state"),
    )
    assert 2 == len(agent.received)
    await context.set_offline(False)
    await events(page, "online")
    await _send(page, 6)
    await _arrived(page, agent, 6)
    assert [(sid, n, {"n": n}) for n in range(1, 7)] == agent.received
    assert 0 == await page.evaluate("window.client.pending")
    await agent.close()


async def test_a_transport_lost_during_the_gap_reconnects_then_flushes_in_order(
    served_app: ServeApp, keeper: callstate.Keeper, context: BrowserContext, page: Page
) -> None:
    """When the link dies while offline, coming back resumes (epoch+1, one request) and
    the queued messages go out over the new transport, once, in order."""
    agent, sid = await _call(served_app, keeper, page)
    await _send(page, 1)
    await _arrived(page, agent, 1)
    await context.set_offline(True)
    await events(page, "offline")
    await _send(page, 2, 3)
    await agent.links[sid].close(code=1001)  # the network switch killed the link
    await events(page, "disconnected")
    await _send(page, 4)
    agent.requests.clear()
    await context.set_offline(False)
    (resumed,) = await events(page, "resumed")
    await _arrived(page, agent, 4)
    assert [(sid, n, {"n": n}) for n in range(1, 5)] == agent.received
    assert (sid, 2) == (resumed["sessionId"], resumed["epoch"])
    assert [
        "http /callstate/v1/resume",
        "websocket /ws",
    ] == agent.seen("http /callstate/v1/", "websocket")
    await agent.close()


async def test_messages_queued_before_a_reload_are_sent_after_it(
    served_app: ServeApp, keeper: callstate.Keeper, context: BrowserContext, page: Page
) -> None:
    """The queue lives in sessionStorage: sent offline, the page reloads, and the resumed
    call delivers them, numbering on from where it was."""
    agent, sid = await _call(served_app, keeper, page)
    await _send(page, 1)
    await _arrived(page, agent, 1)
    await context.set_offline(True)
    await events(page, "offline")
    await _send(page, 2, 3)
    await context.set_offline(False)
    await page.reload()
    await events(page, "resumed")
    await _send(page, 4)
    await _arrived(page, agent, 4)
    assert [(sid, n, {"n": n}) for n in range(1, 5)] == agent.received
    await agent.close()

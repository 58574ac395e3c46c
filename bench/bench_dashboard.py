"""The dashboard's call timeline in a real browser: one call of 10,000 events.

Records a call through a real keeper on SQLite (speech with TTS progress, guarded tool
calls, barge-ins, link drops, a resume: a new leg), serves the web app with the
dashboard on (uvicorn on a loopback port), and opens the call's page in headless
Chromium again and again. Each run is timed in the page, from the route change to:

- ``fetch``: the timeline JSON arrived and was decoded (the server reads the journal
  through the Store protocol, folds it and encodes it);
- ``render``: the SVG was built, inserted, styled and laid out;
- ``total``: both; ``painted``: the frame after the picture was painted;
- ``load``: a cold load of the call's address instead (a new document: the page, its
  modules, the fetch, the picture), from navigation start to the painted frame.

Prints p50/p95 of each over the runs::

    python bench/bench_dashboard.py --events 10000 --runs 15
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import async_playwright

import callstate
from callstate.testing import FakeClock
from callstate.web import WebOptions, create_app

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import emit, pct

TOKEN = "bench-dashboard-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
#: go to a route, forgetting that the last one was drawn
_SHOW = "r => { if (location.hash !== r) { delete document.documentElement.dataset.rendered; location.hash = r; } }"


def _tools(clock: FakeClock) -> callstate.ToolRegistry:
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def check_availability(date: str) -> dict[str, Any]:
        clock.advance(0.4)
        return {"date": date, "free": ["19:00", "20:00"]}

    return tools


async def record_call(keeper: callstate.Keeper, clock: FakeClock, events: int) -> str:
    """Record one call of about ``events`` events; returns its session id."""
    s = await keeper.start(caller="+15551230000", agent="bench")
    i = 0
    while s.state.seq < events:
        if i == 300:  # the caller drops and is resumed: a second leg
            await s.close()
            clock.advance(8.0)
            s = await keeper.resume(s.id)
            s.connection_restored()
        clock.advance(0.6)
        s.user_partial("could you check")
        clock.advance(0.9)
        s.user_said(f"could you check tonight, turn {i}")
        clock.advance(0.3)
        u = s.agent_started("Sure, let me look at what is free tonight for you.")
        clock.advance(0.8)
        s.agent_progress(u, spoken_text="Sure, let me look")
        if i % 4 == 0:
            await s.run_tool("check_availability", {"date": f"d{i}"}, call_id=f"c{i}")
        clock.advance(0.7)
        if i % 5 == 0:
            s.interrupt()
        else:
            s.agent_finished(u)
        if i % 50 == 49:
            s.connection_lost("network switch")
            clock.advance(2.0)
            s.connection_restored()
        if i % 20 == 0:
            await s.flush()
        i += 1
    await s.end(reason="caller_hangup")
    return s.id


async def _serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers nothing to await
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock(time.time() - 3 * 3_600)
        keeper = callstate.Keeper(
            f"sqlite:///{tmp}/bench.db",
            secret=b"bench-dashboard-secret-012345678",
            clock=clock,
            sweep_every=None,
            tools=_tools(clock),
        )
        async with keeper:
            session_id = await record_call(keeper, clock, args.events)
            stored = len(await keeper.store.read_events(session_id))
            app = create_app(keeper, WebOptions(dashboard=True, dashboard_token=TOKEN))
            server, task, port = await _serve(app)
            try:
                samples = await _measure(port, session_id, args.runs, args.screenshot)
            finally:
                server.should_exit = True
                await task
    emit("events", stored)
    emit("runs", args.runs)
    for name in ("fetch", "render", "total", "painted", "load"):
        values = [s[f"{name}_ms"] for s in samples]
        emit(f"{name}_p50_ms", pct(values, 50))
        emit(f"{name}_p95_ms", pct(values, 95))
    emit("total_mean_ms", statistics.fmean(s["total_ms"] for s in samples))
    emit("svg_elements", samples[-1]["svg_elements"])


async def _measure(
    port: int, session_id: str, runs: int, screenshot: str | None
) -> list[dict[str, float]]:
    base = f"http://127.0.0.1:{port}/dashboard/"
    out: list[dict[str, float]] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await page.goto(f"{base}#token={TOKEN}")
        await page.wait_for_function("() => document.documentElement.dataset.rendered")
        for n in range(runs + 1):  # the first run warms the browser's caches: not counted
            await page.evaluate(_SHOW, "#/calls")
            await page.wait_for_function("() => document.documentElement.dataset.rendered")
            await page.evaluate(_SHOW, f"#/call/{session_id}")
            await page.wait_for_function(
                "() => window.dashboardTiming && window.dashboardTiming.painted_ms "
                "&& document.documentElement.dataset.rendered === 'call'",
                timeout=60_000,
            )
            timing = await page.evaluate("() => window.dashboardTiming")
            # and a cold load of the call's address: HTML, modules, fetch, picture
            await page.goto("about:blank")
            await page.goto(f"{base}#/call/{session_id}")
            await page.wait_for_function(
                "() => window.dashboardTiming && window.dashboardTiming.since_navigation_ms",
                timeout=60_000,
            )
            timing["load_ms"] = await page.evaluate(
                "() => window.dashboardTiming.since_navigation_ms"
            )
            elements = await page.evaluate(
                "() => document.querySelectorAll('svg.timeline *').length"
            )
            if not elements:
                raise SystemExit("the timeline drew nothing")
            timing["svg_elements"] = elements
            if n:
                out.append(timing)
            await page.evaluate("() => { window.dashboardTiming = null; }")
        if screenshot:
            await page.screenshot(path=screenshot, full_page=True)
        await browser.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="events in the call")
    parser.add_argument("--runs", type=int, default=15, help="timed page loads")
    parser.add_argument("--screenshot", help="save the last run's page as this PNG")
    asyncio.run(main(parser.parse_args()))

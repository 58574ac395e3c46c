"""The dashboard in headless Chromium over real HTTP, on a store seeded with real calls:
the token prompt, the call list and its filters, a call's timeline picture (checked by
DOM queries on the SVG and saved as a screenshot), and the recovery-quality charts."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from callstate.testing import FakeClock
from callstate.web import WebOptions, create_app

from .conftest import serving
from .dashboard_calls import CALLER, Rig, Seeded, seed

CHROMIUM = "/usr/bin/chromium"
TOKEN = "operator-token-0123456789"
#: screenshots land here (CALLSTATE_SCREENSHOTS=dir to keep them), else in tmp_path
SHOTS = os.environ.get("CALLSTATE_SCREENSHOTS")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and os.environ.get("CALLSTATE_REQUIRE_SERVICES") != "1",
    reason="needs Debian's chromium at /usr/bin/chromium (scripts/test installs it)",
)


@dataclass
class Dash:
    """A browser page on a served, seeded dashboard."""

    page: Page
    base: str
    ids: Seeded
    shots: Path
    rig: Rig
    loaded: bool = False
    #: console errors a test expects (a refused request), by a part of their text
    allowed: list[str] = field(default_factory=list)

    async def open(self, route: str, *, token: bool = True) -> None:
        """Show ``route`` (``#/...``); the first load gives the token once in the address."""
        if not self.loaded:
            where = f"#token={TOKEN}" if token else ""
            await self.page.goto(f"{self.base}/dashboard/{where}")
            await self.rendered()
            self.loaded = True
        if route:
            await self.page.evaluate(
                "r => { if (location.hash !== r) { delete document.documentElement.dataset.rendered; location.hash = r; } }",
                route,
            )
            await self.rendered()

    async def rendered(self) -> None:
        await self.page.wait_for_function(
            "() => document.documentElement.dataset.rendered", timeout=15_000
        )

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian chromium (never a downloaded one)."""
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def dash(tmp_path: Path, browser: Browser) -> AsyncIterator[Dash]:
    """The seeded calls served with the dashboard on, and a 1400-wide page."""
    rig = Rig(f"sqlite:///{tmp_path}/cs.db", FakeClock(time.time() - 7_200))
    shots = Path(SHOTS) if SHOTS else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    async with rig.keeper:
        ids = await seed(rig)
        app = create_app(rig.keeper, WebOptions(dashboard=True, dashboard_token=TOKEN))
        async with serving(app) as client:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(  # a CSP violation or a failed request is logged as a console error
                "console", lambda m: errors.append(m.text) if m.type == "error" else None
            )
            dash = Dash(page, str(client.base_url).rstrip("/"), ids, shots, rig)
            yield dash
            await page.close()
            assert [] == [e for e in errors if not any(a in e for a in dash.allowed)]


async def test_without_a_token_the_page_asks_for_one(dash: Dash) -> None:
    """No token in this tab: the sign-in form, and no call data on the page."""
    await dash.open("", token=False)
    assert "signin" == await dash.page.evaluate("document.documentElement.dataset.rendered")
    assert 1 == await dash.page.locator("form.signin input[name=token]").count()
    assert 0 == await dash.page.locator("tr.call").count()


async def test_a_wrong_token_is_refused_and_asked_again(dash: Dash) -> None:
    """A pasted wrong token gets the form back with the server's refusal."""
    dash.allowed.append("status of 401")
    await dash.open("", token=False)
    await dash.page.fill("input[name=token]", "not-the-token-0123456789")
    await dash.page.click("form.signin button")
    await dash.page.wait_for_selector("form.signin .error:not([hidden])")
    assert "refused" in await dash.page.inner_text("form.signin .error")


async def test_the_call_list_shows_each_call_with_outcome_and_health(dash: Dash) -> None:
    """Five rows, latest first, outcome and health badges per leg, caller tags only."""
    await dash.open("#/calls")
    await dash.shot("calls")
    rows = dash.page.locator("tr.call")
    ids = dash.ids
    assert [ids.abandoned, ids.in_doubt, ids.failed, ids.booking, ids.completed] == [
        await rows.nth(i).get_attribute("data-session") for i in range(await rows.count())
    ]
    booking = dash.page.locator(f'tr.call[data-session="{dash.ids.booking}"]')
    outcomes = await booking.locator("[data-outcome]").evaluate_all(
        "es => es.map(e => e.dataset.outcome)"
    )
    assert ["superseded", "completed", "recovered"] == outcomes
    assert 3 == await booking.locator("[data-health]").count()
    assert CALLER not in await dash.page.content()


async def test_the_outcome_filter_narrows_the_list(dash: Dash) -> None:
    """Choosing outcome 'failed' in the form leaves the one failed call."""
    await dash.open("#/calls")
    await dash.page.select_option("select[name=outcome]", "failed")
    await dash.page.click("#filters button")
    await dash.page.wait_for_function(
        "() => location.hash.includes('outcome=failed') && document.documentElement.dataset.rendered"
    )
    assert [dash.ids.failed] == await dash.page.locator("tr.call").evaluate_all(
        "es => es.map(e => e.dataset.session)"
    )


async def test_the_timeline_draws_every_leg_and_what_happened(dash: Dash) -> None:
    """The booking's picture: a band per leg (start, handoff, resume), a bar per tool
    call with its held and announced deliveries, a marker per barge-in, the holds, the
    resume's gap, the handoff and the follow-up."""
    await dash.open(f"#/call/{dash.ids.booking}")
    await dash.shot("timeline")
    svg = dash.page.locator("svg.timeline")

    async def attrs(selector: str, name: str) -> list[str | None]:
        return await svg.locator(selector).evaluate_all(
            f"es => es.map(e => e.getAttribute('{name}'))"
        )

    assert ["1", "2", "3"] == await attrs("g.leg", "data-epoch")
    assert ["start", "handoff", "resume"] == await attrs("g.leg", "data-via")
    assert ["c1", "c2", "c3"] == await attrs("g.tool", "data-call-id")
    assert ["held", "announced"] == await attrs(
        'g.tool[data-call-id="c2"] .delivery', "data-decision"
    )
    assert 1 == await svg.locator('g.leg[data-epoch="1"] g.barge-in').count()
    assert 1 == await svg.locator('g.leg[data-epoch="1"] rect.speech.agent.interrupted').count()
    assert 2 == await svg.locator("rect.hold").count()
    assert ["resume"] == await attrs("g.resume", "data-via")
    assert ["offered", "accepted"] == await attrs("g.handoff", "data-kind")
    assert 1 == await svg.locator("g.followup.ok").count()
    assert [3, 0, 1] == [
        await svg.locator(f'g.leg[data-epoch="{n}"] rect.speech.caller').count() for n in (1, 2, 3)
    ]
    assert CALLER not in await dash.page.content()


async def test_tool_bars_run_from_intent_to_outcome_in_time_order(dash: Dash) -> None:
    """Each tool bar starts where its call was requested: c1 before c2 in leg 1, and the
    overtaken write's bar reaches past the barge-in marker."""
    await dash.open(f"#/call/{dash.ids.booking}")
    box = dash.page.locator("svg.timeline")
    c1 = await box.locator('g.tool[data-call-id="c1"] .tool-run').bounding_box()
    c2 = await box.locator('g.tool[data-call-id="c2"] .tool-run').bounding_box()
    barge = await box.locator("g.barge-in line").bounding_box()
    assert c1 is not None
    assert c2 is not None
    assert barge is not None
    assert c1["x"] + c1["width"] <= c2["x"]
    assert c2["x"] < barge["x"] < c2["x"] + c2["width"]


async def test_the_quality_page_draws_the_three_charts(dash: Dash) -> None:
    """Recovered rate, time to recover and in-doubt charts, plus health classes; the
    two resumes' gaps (7 s, 26 s) are points on the time-to-recover chart."""
    await dash.open("#/quality")
    await dash.shot("quality")
    charts = await dash.page.locator("svg.chart").evaluate_all("es => es.map(e => e.dataset.chart)")
    assert ["recovered_rate", "time_to_recover", "health", "in_doubt"] == charts
    points = dash.page.locator('svg[data-chart="time_to_recover"] circle.point')
    assert {"7", "26"} == set(await points.evaluate_all("es => es.map(e => e.dataset.value)"))
    assert 1 <= await dash.page.locator('svg[data-chart="recovered_rate"] circle.point').count()
    assert 8 == sum(
        int(v)
        for v in await dash.page.locator('svg[data-chart="health"] rect.bar').evaluate_all(
            "es => es.map(e => e.dataset.value)"
        )
    )


MARKUP = '<img src=x onerror="window.injected=1"><script>window.injected=2</script>'


async def test_what_callers_and_agents_say_is_drawn_as_text_never_markup(dash: Dash) -> None:
    """Markup in a caller's words and an agent's name shows as text: no element or
    script of it gets into the page."""
    k = dash.rig.keeper
    s = await k.start(agent=f"agent {MARKUP}")
    s.user_said(f"I said {MARKUP}")
    s.agent_finished(s.agent_started(MARKUP))
    await s.end(reason="caller_hangup")
    await dash.open(f"#/call/{s.id}")
    titles = await dash.page.locator("svg.timeline rect.speech title").all_text_contents()
    assert [f"caller: “I said {MARKUP}”", f"agent: “{MARKUP}”"] == titles
    assert (
        f"leg 1 · agent {MARKUP}" == await dash.page.locator("g.leg text.leg-label").text_content()
    )
    await dash.open("#/calls")
    assert f"agent {MARKUP}" in await dash.page.inner_text(f'tr.call[data-session="{s.id}"]')
    assert (0, None) == (
        await dash.page.locator("main img, main script").count(),
        await dash.page.evaluate("window.injected"),
    )

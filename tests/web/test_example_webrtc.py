"""examples/web/ end to end: a real WebRTC call from headless Chromium survives a reload.

The example server runs on a loopback port (uvicorn) over a SQLite store; Debian's
chromium, driven by Playwright, opens its page with a fake microphone that plays a
sentence espeak-ng spoke. Pipecat's Silero VAD finds it in the WebRTC audio, the
scripted bot answers with espeak-ng's voice, and the page is reloaded while that answer
is still playing.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from playwright.async_api import async_playwright

from callstate import Keeper, decode_event
from callstate.journal import events as ev
from callstate.web import WebOptions, create_app

from .conftest import serving

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "web"
CHROMIUM = "/usr/bin/chromium"
SECRET = b"web-example-secret-of-32-bytes!!"

logger.remove()  # Pipecat logs every frame at debug level; the test reads the journal instead

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


def load_example() -> tuple[Any, Any]:
    """The example's ``server`` and ``bot`` modules."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    return importlib.import_module("server"), importlib.import_module("bot")


def caller_audio(path: Path, text: str) -> Path:
    """A WAV the fake microphone plays once: 7 s of silence (the greeting), ``text``, silence."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(
        ["sox", str(raw), "-r", "48000", "-c", "1", str(path), "pad", "7", "60"], check=True
    )
    return path


@asynccontextmanager
async def example_call(
    tmp_path: Path, *, speech: str | None, split: bool = False
) -> AsyncIterator[tuple[Keeper, Any, Any, str]]:
    """The example served over a SQLite store, and a Chromium page; yields (keeper, app,
    page, url). With ``split`` the callstate endpoints are a service of their own (their
    own keeper over the same store, on another port), as ``--callstate-url`` runs it."""
    server, _ = load_example()
    store = f"sqlite:///{tmp_path}/calls.db"
    keeper = Keeper(store, secret=SECRET)
    args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    if speech is not None:
        wav = caller_audio(tmp_path / "caller.wav", speech)
        args.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
    async with AsyncExitStack() as stack:
        url = None
        if split:
            service = create_app(Keeper(store, secret=SECRET), WebOptions(cors_origins=["*"]))
            url = f"{(await stack.enter_async_context(serving(service))).base_url}/"
        app = server.create_server(keeper, callstate_url=url)
        async with serving(app) as http, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                page = await browser.new_page()
                yield keeper, app, page, str(http.base_url)
            finally:
                await browser.close()


async def until(check: Callable[[], Any], *, within: float = 30.0) -> None:
    """Wait until ``check()`` is true (polled every 50 ms)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - the state changes inside the pipeline
            await asyncio.sleep(0.05)


async def page_until(page: Any, expression: str, *, within: float = 30.0) -> Any:
    """Wait until ``expression`` is truthy in the page; returns its value."""
    handle = await page.wait_for_function(expression, timeout=within * 1000)
    return await handle.json_value()


async def test_a_reload_mid_sentence_resumes_the_call_where_it_was_cut(tmp_path: Path) -> None:
    """Reload while the bot speaks: same session at epoch 2, no greeting, the rest known."""
    _, bot = load_example()
    async with example_call(tmp_path, speech=bot.CALLER[0]) as (keeper, app, page, url):
        calls = app.state.calls
        await page.goto(url)
        first = await page_until(page, "window.demo?.session")
        sid = first["session_id"]
        await page_until(page, "window.demo.connections === 1")
        # the caller's sentence is heard, and the answer starts playing
        await until(
            lambda: (
                [i.spoken for i in calls.sessions[sid].state.items if i.kind == "assistant"]
                == [bot.GREETING, "Of course."]
            )
        )
        await page.uncheck("#mic")  # the fake microphone would say it all again after the reload
        await page.reload()
        await page_until(page, "window.demo?.connections === 1")
        events = await page.evaluate("window.demo.events.map(e => e.type)")
        resumed = calls.sessions[sid]
        await until(lambda: sum(i.kind == "assistant" for i in resumed.state.items) == 3)
        await until(lambda: len(resumed.state.items[-1].spoken) > 0)
        await page.screenshot(path=str(tmp_path / "resumed.png"))
        await resumed.flush()
        stored = [decode_event(raw) for raw in (await keeper.store.load(sid)).events]

    answer = bot.ANSWERS[0]
    rest = answer.removeprefix("Of course.").strip()
    assert ["resumed"] == [e for e in events if e in ("resumed", "fresh", "expired")]
    assert (sid, 2) == (resumed.id, resumed.state.epoch)
    assert resumed.recovery is not None
    assert rest == resumed.recovery.unspoken
    assert f"while you were saying “{rest[:20]}" in resumed.recovery.resume_note
    said = [e.text for e in stored if isinstance(e, ev.UserTurn)]
    assert [bot.CALLER[0]] == said
    texts = [i.text for i in resumed.state.items if i.kind == "assistant"]
    assert bot.GREETING == texts[0]  # the conversation is intact ...
    assert answer == texts[1]  # generated whole, cut off after "Of course."
    assert bot.RESUMED.format(unspoken=rest) == texts[2]  # ... and the bot did not greet again
    assert 1 == texts.count(bot.GREETING)


async def test_with_callstate_in_its_own_process_a_reload_resumes_the_bot(
    tmp_path: Path,
) -> None:
    """With the endpoints a service of their own, a reload mid-sentence resumes there
    (the page's token: epoch 3), the bot's process takes it by id (epoch 4: it took the
    new call at 2, one past the service's start) and
    continues the cut-off sentence without greeting; the example serves no endpoint."""
    _, bot = load_example()
    async with example_call(tmp_path, speech=bot.CALLER[0], split=True) as (_, app, page, url):
        calls = app.state.calls
        await page.goto(url)
        sid = (await page_until(page, "window.demo?.session"))["session_id"]
        await page_until(page, "window.demo.connections === 1")
        await until(
            lambda: (
                [i.spoken for i in calls.sessions[sid].state.items if i.kind == "assistant"]
                == [bot.GREETING, "Of course."]
            )
        )
        await page.uncheck("#mic")
        await page.reload()
        await page_until(page, "window.demo?.connections === 1")
        back = await page.evaluate("window.demo.session")
        resumed = calls.sessions[sid]
        await until(lambda: sum(i.kind == "assistant" for i in resumed.state.items) == 3)
        here = await page.evaluate("fetch('/callstate/callstate.js').then(r => r.status)")

    rest = bot.ANSWERS[0].removeprefix("Of course.").strip()
    assert (sid, 3, 4) == (back["session_id"], back["epoch"], resumed.state.epoch)
    assert resumed.recovery is not None
    assert rest == resumed.recovery.unspoken
    texts = [i.text for i in resumed.state.items if i.kind == "assistant"]
    assert [bot.GREETING, bot.ANSWERS[0], bot.RESUMED.format(unspoken=rest)] == texts
    assert 404 == here


async def test_messages_sent_while_offline_arrive_once_in_order(tmp_path: Path) -> None:
    """Notes sent (default encode) while the network is down reach the bot once, in order."""
    async with example_call(tmp_path, speech=None) as (_, app, page, url):
        calls = app.state.calls
        await page.add_init_script("sessionStorage.setItem('demo.mic', 'off')")
        await page.goto(url)
        sid = (await page_until(page, "window.demo?.session"))["session_id"]
        await page_until(page, "window.demo.connections === 1")
        await page.evaluate("['a1', 'a2'].forEach(demo.send)")
        await until(lambda: 2 == len(calls.received.get(sid, [])))
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Network.enable")
        offline = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
        await cdp.send("Network.emulateNetworkConditions", {**offline, "offline": True})
        await page_until(page, "window.demo.events.some(e => e.type === 'offline')")
        await page.evaluate("['b1', 'b2', 'b3'].forEach(demo.send)")
        pending = await page.evaluate("demo.pending()")
        during = list(calls.received[sid])
        await cdp.send("Network.emulateNetworkConditions", {**offline, "offline": False})
        await until(lambda: 5 <= len(calls.received[sid]))
        await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
        await page.screenshot(path=str(tmp_path / "online.png"))
        received = list(calls.received[sid])

    assert 3 == pending
    assert 2 == len(during)  # nothing went out while offline
    assert [(1, "a1"), (2, "a2"), (3, "b1"), (4, "b2"), (5, "b3")] == [
        (m["seq"], m["data"]) for m in received
    ]
    assert {"callstate"} == {m["type"] for m in received}


async def test_a_note_sent_as_the_connection_dies_arrives_once_after_the_reconnect(
    tmp_path: Path,
) -> None:
    """A note sent just before the connection dies unannounced goes again and arrives once."""
    async with example_call(tmp_path, speech=None) as (_, app, page, url):
        calls = app.state.calls
        await page.add_init_script("sessionStorage.setItem('demo.mic', 'off')")
        await page.goto(url)
        sid = (await page_until(page, "window.demo?.session"))["session_id"]
        await page_until(page, "window.demo.connections === 1")
        await page.evaluate("demo.send('a1')")
        await until(lambda: 1 == len(calls.received.get(sid, [])))
        await page_until(page, "demo.unacked() === 0")
        # the link goes silent: b1 "goes out" into nothing; the close is seen 300 ms later
        await page.evaluate("demo.kill(); demo.send('b1')")
        await page_until(page, "window.demo.events.some(e => e.type === 'resuming')")
        await page.evaluate("demo.send('c1')")
        await page_until(page, "window.demo.connections === 2")
        await until(lambda: 3 <= len(calls.received[sid]))
        await page_until(page, "demo.unacked() === 0 && demo.pending() === 0")
        await page.evaluate("demo.send('d1')")
        await until(lambda: 4 <= len(calls.received[sid]))
        await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
        received = list(calls.received[sid])

    assert [(1, "a1"), (2, "b1"), (3, "c1"), (4, "d1")] == [(m["seq"], m["data"]) for m in received]


async def test_the_offer_endpoint_refuses_bad_bodies_and_unknown_tokens(tmp_path: Path) -> None:
    """POST /offer answers a malformed body with 400 and a token it holds no call for with 409."""
    server, _ = load_example()
    async with Keeper(f"sqlite:///{tmp_path}/calls.db", secret=SECRET) as keeper:
        other = await keeper.start(caller="+15550000001")  # a call this server was not handed
        token = other.resume_token()
        await other.close()
        async with serving(server.create_server(keeper)) as http:
            bodies = [b"not json", b"[]", b'{"sdp": "v=0", "type": "offer"}']
            bad = [await http.post("/offer", content=body) for body in bodies]
            wrong_type = await http.post(
                "/offer", json={"sdp": "v=0", "type": "answer", "token": token}
            )
            unknown = await http.post(
                "/offer", json={"sdp": "v=0", "type": "offer", "token": token}
            )
            forged = await http.post("/offer", json={"sdp": "v=0", "type": "offer", "token": "x"})

    assert [400, 400, 400, 400] == [r.status_code for r in [*bad, wrong_type]]
    assert {"bad_offer"} == {r.json()["error"]["code"] for r in [*bad, wrong_type]}
    assert (409, "resumable") == (unknown.status_code, unknown.json()["error"]["code"])
    assert 409 == forged.status_code


async def test_a_second_offer_for_a_connected_call_is_refused(tmp_path: Path) -> None:
    """The same token offered again while the call is connected gets 409 session_active."""
    async with example_call(tmp_path, speech=None) as (_, app, page, url):
        await page.add_init_script("sessionStorage.setItem('demo.mic', 'off')")
        await page.goto(url)
        await page_until(page, "window.demo?.connections === 1")
        token = await page.evaluate("JSON.parse(sessionStorage.getItem('callstate:call')).token")
        again = await page.evaluate(
            """async (token) => {
                const r = await fetch("/offer", {method: "POST", body: JSON.stringify(
                    {sdp: "v=0", type: "offer", token})});
                return [r.status, (await r.json()).error.code];
            }""",
            token,
        )
        connected = list(app.state.calls.calls)

    assert [409, "session_active"] == again
    assert 1 == len(connected)

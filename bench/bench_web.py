"""Web reconnect benchmark: a page reload in a real browser, back on the call over WebRTC.

The web example (``examples/web/``: callstate's app, the SmallWebRTC offer endpoint and
the scripted Pipecat bot) is served on a loopback port over a SQLite store. Debian's
chromium (Playwright, fake microphone, muted) opens its page, which starts a call; then
the page is reloaded ``--reloads`` times. Each reload is what a caller's browser does
before the bot can hear them again: load the page and ``callstate.js``, preflight the
tab's token and resume the call (one request: the resume is refused with the
preflight answer unless it may take the call; epoch+1, a fresh token), then open the WebRTC connection
(microphone, offer with every ICE candidate, the bot's pipeline built for the resumed
session, ICE, DTLS, SCTP) until its data channel is open.

    python bench/bench_web.py
    python bench/bench_web.py --reloads 100
    python bench/bench_web.py --split   # callstate's endpoints in a process of their own

With ``--split`` (the recommended deployment) ``callstate serve`` runs the endpoints in
its own process over the same store, the page calls them there (CORS), and the example's
process runs only the page, the offer and the bots (``server_ours`` is then not timed:
the middleware sees only this process).

Times come from the page (``performance.now()``, 0 at the reload's navigation start)
and from the server (each endpoint's handling time). Every metric is ``name value``:

- ``ours_*``: callstate's round trips as the client timed them (HTTP + callstate), from
  its first request to the resumed session's answer: the resume (and a preflight before
  it, when the client sends one: ``preflight_*``, absent from today's client);
  ``server_ours_*`` the server's handling time of the same requests.
- ``transport_*``: from the page asking for the connection to its data channel opening;
  split into ``mic_*`` (the microphone), ``gather_*`` (the offer and its ICE gathering), ``offer_*`` (the offer's
  round trip: the server builds the bot's pipeline and answers) and ``open_*`` (ICE
  checks, DTLS and SCTP until the data channel opens).
- ``page_*``: navigation start to the client's first request (page and module load).
- ``reconnect_*``: navigation start to the data channel open: the whole reconnect.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import uvicorn
from loguru import logger
from playwright.async_api import async_playwright
from starlette.types import ASGIApp, Receive, Scope, Send

import callstate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "web"))
from server import create_server  # the example under test

CHROMIUM = "/usr/bin/chromium"
SECRET = b"bench-web-secret-0123456789abcdef"
TIMED = {"/callstate/v1/preflight", "/callstate/v1/resume", "/offer"}

#: the page's figures for the reload it just made, once it is back on the call
READ_PAGE = """() => {
  const demo = window.demo;  // undefined until the page's module has imported callstate.js
  if (!demo) return null;
  const back = demo.events.find((e) => e.type === "resumed");
  const t = demo.timings;
  if (!back || t.open === undefined) return null;
  return { ...back.detail.timings, ...t, epoch: back.detail.epoch };
}"""


def pct(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def emit(name: str, value: float | int | str) -> None:
    print(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}", flush=True)


class ServerTimes:
    """ASGI middleware: how long the server took to answer each timed path, in ms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.ms: dict[str, list[float]] = {path: [] for path in TIMED}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in TIMED:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.ms[scope["path"]].append((time.perf_counter() - t0) * 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(app: ASGIApp, port: int) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Serve ``app`` on loopback ``port``; returns its URL and a coroutine that stops it."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers nothing to await
        await asyncio.sleep(0.01)

    async def stop() -> None:
        server.should_exit = True
        await task

    return f"http://127.0.0.1:{port}/", stop


async def service(store: str, origin: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """``callstate serve`` in a process of its own; returns its URL and its stop."""
    port = free_port()
    env = {**os.environ, "CALLSTATE_SECRET": SECRET.decode()}
    args = ["-m", "callstate", "serve", "--db", store, "--port", str(port), "--cors", origin]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    await proc.stdout.readline()  # "callstate web on ...": listening

    async def stop() -> None:
        proc.terminate()
        await proc.wait()

    return f"http://127.0.0.1:{port}/", stop


async def run(reloads: int, store: str, *, split: bool = False) -> None:
    keeper = callstate.Keeper(store, secret=SECRET)
    port = free_port()
    stop_service: Callable[[], Awaitable[None]] | None = None
    base: str | None = None
    if split:
        base, stop_service = await service(store, f"http://127.0.0.1:{port}")
    timed = ServerTimes(create_server(keeper, callstate_url=base))
    url, stop = await serve(timed, port)
    rows: list[dict[str, float]] = []
    try:
        async with async_playwright() as pw:
            args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
            page = await browser.new_page()
            await page.add_init_script("sessionStorage.setItem('demo.mic', 'off')")
            await page.goto(url)
            await page.wait_for_function("window.demo?.connections === 1", timeout=60_000)
            for path in TIMED:
                timed.ms[path].clear()  # the first call's start is not a reconnect
            for _ in range(reloads + 1):  # the first reload warms the server's resume path
                await page.reload()
                row = await (await page.wait_for_function(READ_PAGE, timeout=60_000)).json_value()
                rows.append(row)
            await browser.close()
    finally:
        await stop()
        if stop_service is not None:
            await stop_service()
    rows = rows[1:]
    server = {path: samples[1:] for path, samples in timed.ms.items()}
    figures: dict[str, list[float]] = {
        "ours": [r.get("preflight_ms", 0.0) + r["resume_ms"] for r in rows],
        "resume": [r["resume_ms"] for r in rows],
    }
    preflights = [r["preflight_ms"] for r in rows if "preflight_ms" in r]
    if preflights:  # a client that asks preflight before resuming
        figures["preflight"] = preflights
    if not split:
        asked = server["/callstate/v1/preflight"]
        resumed = server["/callstate/v1/resume"]
        if asked:
            figures["server_ours"] = [a + b for a, b in zip(asked, resumed, strict=True)]
            figures["server_preflight"] = asked
        else:
            figures["server_ours"] = resumed
        figures["server_resume"] = resumed
    figures |= {
        "transport": [r["open"] - r["connect"] for r in rows],
        "mic": [r["mic"] - r["connect"] for r in rows],
        "gather": [r["offer"] - r["mic"] for r in rows],
        "offer": [r["answered"] - r["offer"] for r in rows],
        "server_offer": server["/offer"],
        "open": [r["open"] - r["answered"] for r in rows],
        "page": [r["at_ms"] for r in rows],
        "reconnect": [r["open"] for r in rows],
    }
    emit("endpoints", "split" if split else "shared")
    emit("reloads", len(rows))
    emit("epochs", f"{int(rows[0]['epoch'])}..{int(rows[-1]['epoch'])}")
    for name, samples in figures.items():
        emit(f"{name}_p50_ms", pct(samples, 0.50))
        emit(f"{name}_p95_ms", pct(samples, 0.95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reloads", type=int, default=30)
    parser.add_argument(
        "--split", action="store_true", help="serve callstate's endpoints from their own process"
    )
    parser.add_argument("--store", default=None, help="store URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    logger.remove()  # Pipecat logs every frame; only the metric lines go to stdout
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"sqlite:///{tmp}/bench.db"
        asyncio.run(run(args.reloads, store, split=args.split))


if __name__ == "__main__":
    main()

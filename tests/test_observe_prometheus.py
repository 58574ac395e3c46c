"""The Prometheus sink: metric names, labels and gauges, scraped over real HTTP and
read back with prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import callstate
from callstate.observe.prometheus import PrometheusSink

SECRET = b"prometheus-test-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cs.db"


async def test_a_scrape_shows_outcomes_recoveries_flushes_and_live_sessions(url: str) -> None:
    """Counters, histograms and gauges reach a real scrape with Prometheus names."""
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str, time: str) -> dict[str, Any]:
        return {"booking_id": booking_id, "time": time, "moved": True}

    async with callstate.Keeper(url, tools=tools, secret=SECRET) as k:
        sink = PrometheusSink(k)
        s = await k.start()
        await s.run_tool("move_booking", {"booking_id": "B1", "time": "20:00"}, call_id="c1")
        s.connection_lost()
        await s.flush()
        await s.close()
        s2 = await k.resume(s.id)
        s2.connection_lost()
        await k.observer.drain()
        server = sink.serve(_free_port())
        try:
            got = await asyncio.to_thread(_scrape, server.port)
        finally:
            server.close()
    outcome = (("effect", "write"), ("status", "succeeded"), ("tool", "move_booking"))
    assert 1.0 == got[("callstate_tool_outcomes_total", outcome)]
    assert 1.0 == got[("callstate_recovery_events_total", (("kind", "session.resumed"),))]
    assert 1.0 == got[("callstate_recovery_duration_seconds_count", (("via", "resume"),))]
    assert got[("callstate_flush_duration_seconds_count", ())] >= 2
    assert (1.0, 1.0) == (
        got[("callstate_sessions_live", ())],
        got[("callstate_sessions_on_hold", ())],
    )


async def test_the_asgi_app_serves_the_same_text(url: str) -> None:
    """sink.app() is an ASGI app answering with the registry's text format."""
    async with callstate.Keeper(url) as k:
        sink = PrometheusSink(k)
        await k.start()
        await k.observer.drain()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}
        await sink.app()(scope, receive, send)
        expected = sink.text()
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert 200 == sent[0]["status"]
    assert expected == body.decode()
    assert "callstate_sessions_live 1.0" in body.decode()

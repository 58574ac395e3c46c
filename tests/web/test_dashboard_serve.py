"""`callstate serve --dashboard`: the dashboard behind a token, a new one printed once in
the dashboard's address when ``$CALLSTATE_DASHBOARD_TOKEN`` is not set."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from services import free_port

SECRET = "serve-dashboard-secret-0123456789"


@asynccontextmanager
async def _serve(
    tmp_path: Path, *flags: str, token: str | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """`callstate serve` in a child process; yields a client and its output lines so far."""
    port = free_port()
    env = {**os.environ, "CALLSTATE_SECRET": SECRET}
    env.pop("CALLSTATE_DASHBOARD_TOKEN", None)
    if token is not None:
        env["CALLSTATE_DASHBOARD_TOKEN"] = token
    db = str(tmp_path / "serve.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callstate", "serve", "--db", db, "--port", str(port), *flags,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            async with asyncio.timeout(60):
                while True:
                    try:
                        await client.get("/v1/openapi.json")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                want = 2 if "--dashboard" in flags else 1
                while len(lines) < want:
                    lines.append((await proc.stdout.readline()).decode().strip())
            yield client, lines
    finally:
        proc.terminate()
        await proc.communicate()


async def test_serve_dashboard_prints_a_new_token_that_opens_the_data(tmp_path: Path) -> None:
    """Without $CALLSTATE_DASHBOARD_TOKEN a fresh token is printed in the address
    fragment; it opens the data, and no token gets 401."""
    async with _serve(tmp_path, "--dashboard") as (client, lines):
        [token] = re.findall(r"/dashboard/#token=(\S+)$", lines[1])
        ok = await client.get("/v1/dashboard/calls", headers={"authorization": f"Bearer {token}"})
        refused = await client.get("/v1/dashboard/calls")
    assert (200, {"calls": []}) == (ok.status_code, ok.json())
    assert 401 == refused.status_code
    assert 24 <= len(token)


async def test_serve_dashboard_takes_the_token_from_the_environment(tmp_path: Path) -> None:
    """With $CALLSTATE_DASHBOARD_TOKEN set, that token opens the data and is never printed."""
    token = "env-dashboard-token-0123456789"
    async with _serve(tmp_path, "--dashboard", token=token) as (client, lines):
        ok = await client.get("/v1/dashboard/calls", headers={"authorization": f"Bearer {token}"})
    assert 200 == ok.status_code
    assert [] == [line for line in lines if token in line]


async def test_serve_without_the_flag_has_no_dashboard(tmp_path: Path) -> None:
    """Plain `callstate serve` serves no dashboard, whatever the environment says."""
    token = "env-dashboard-token-0123456789"
    async with _serve(tmp_path, token=token) as (client, _):
        page = await client.get("/dashboard/")
        data = await client.get("/v1/dashboard/calls", headers={"authorization": f"Bearer {token}"})
    assert (404, 404) == (page.status_code, data.status_code)

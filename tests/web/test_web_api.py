"""The web endpoints over real HTTP: start, preflight, resume, refresh, errors as JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

import callstate
from callstate.continuity.plan import PreflightStatus
from callstate.storage import Store, open_store
from callstate.testing import FakeClock
from callstate.web import WebOptions, create_app
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

from .conftest import serving

SECRET = b"web-test-secret-0123456789abcdef"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cs.db"


async def _start(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    reply = await client.post("/v1/start", json=body)
    assert 201 == reply.status_code, reply.text
    return dict(reply.json())


async def test_start_then_resume_by_token_moves_to_the_next_epoch(url: str) -> None:
    """A token from start resumes at epoch 2 and the answer carries a fresh token."""
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(create_app(keeper)) as client:
        first = await _start(client, caller="+15551234567", agent="booker")
        reply = await client.post("/v1/resume", json={"token": first["token"]})
        got = reply.json()
    assert 200 == reply.status_code
    assert (first["session_id"], 1, 2, True) == (
        got["session_id"],
        first["epoch"],
        got["epoch"],
        got["resumed"],
    )
    assert got["token"] != first["token"]
    assert "booker" == got["agent"]


async def test_preflight_never_takes_ownership(url: str) -> None:
    """Preflight answers resumable and leaves the epoch where it was."""
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(create_app(keeper)) as client:
        first = await _start(client)
        pre = (await client.post("/v1/preflight", json={"token": first["token"]})).json()
        state = await keeper.load(first["session_id"])
    assert ("resumable", first["session_id"], 1) == (pre["status"], pre["session_id"], pre["epoch"])
    assert 1 == state.epoch


async def test_an_old_token_after_another_resume_is_refused_as_superseded(url: str) -> None:
    """Once a token resumed the call, the token before it gets 409 token_superseded."""
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(create_app(keeper)) as client:
        first = await _start(client)
        await client.post("/v1/resume", json={"token": first["token"]})
        again = await client.post("/v1/resume", json={"token": first["token"]})
        pre = (await client.post("/v1/preflight", json={"token": first["token"]})).json()
    assert (409, "token_superseded") == (again.status_code, again.json()["error"]["code"])
    assert "superseded" == pre["status"]


async def test_refresh_gives_a_new_token_for_the_same_epoch(url: str) -> None:
    """A refreshed token names the same session and epoch and still resumes."""
    clock = FakeClock()
    keeper = callstate.Keeper(url, secret=SECRET, clock=clock)
    async with serving(create_app(keeper, WebOptions(token_ttl=3600))) as client:
        first = await _start(client, caller="+15551234567")
        clock.advance(60)
        fresh = (await client.post("/v1/token/refresh", json={"token": first["token"]})).json()
        resumed = (await client.post("/v1/resume", json={"token": fresh["token"]})).json()
    assert (first["session_id"], 1) == (fresh["session_id"], fresh["epoch"])
    assert fresh["token"] != first["token"]
    assert 2 == resumed["epoch"]


async def test_refresh_refuses_a_superseded_token(url: str) -> None:
    """Once another resume took the call, refreshing the older token is 409 superseded."""
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(create_app(keeper)) as client:
        first = await _start(client)
        await client.post("/v1/resume", json={"token": first["token"]})
        reply = await client.post("/v1/token/refresh", json={"token": first["token"]})
    assert (409, "token_superseded") == (reply.status_code, reply.json()["error"]["code"])


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "code"),
    [
        ("/v1/resume", b"{not json", {"content-type": "application/json"}, 400, "bad_request"),
        ("/v1/resume", b'{"token": 5}', {"content-type": "application/json"}, 400, "bad_request"),
        ("/v1/resume", b'{"tokn": "x"}', {"content-type": "application/json"}, 400, "bad_request"),
        ("/v1/resume", b'{"token": "x"}', {"content-type": "text/plain"}, 415, "bad_request"),
        ("/v1/preflight", b"[" * 5000 + b"]" * 5000, {"content-type": "application/json"}, 400, "bad_request"),
        ("/v1/resume", b'{"token": "' + b"a" * 20000 + b'"}', {"content-type": "application/json"}, 413, "bad_request"),
        ("/v1/resume", b'{"token": "cs1.AAAA.BBBB"}', {"content-type": "application/json"}, 401, "token_invalid"),
        ("/v1/token/refresh", b'{"token": "no-such"}', {"content-type": "application/json"}, 401, "token_invalid"),
    ],
)  # fmt: skip
async def test_bad_requests_get_json_errors_with_a_stable_code(
    url: str, path: str, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    """Malformed, mistyped, oversized or nested bodies and bad tokens: JSON 4xx, never 500."""
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(create_app(keeper)) as client:
        await _start(client)
        reply = await client.post(path, content=content, headers=headers)
    assert (status, code) == (reply.status_code, reply.json()["error"]["code"])
    assert reply.json()["error"]["message"]


async def test_a_tampered_token_changes_nothing_stored(url: str) -> None:
    """A token with one flipped character is refused and the session stays at epoch 1."""
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(create_app(keeper)) as client:
        first = await _start(client)
        token = first["token"]
        flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        reply = await client.post("/v1/resume", json={"token": flipped})
        state = await keeper.load(first["session_id"])
    assert (401, "token_invalid", 1) == (
        reply.status_code,
        reply.json()["error"]["code"],
        state.epoch,
    )


async def test_a_session_id_is_no_token_to_the_web_endpoints(url: str) -> None:
    """A bare session id (trusted server code's key) is `invalid` to preflight and a
    401 to resume over HTTP, and the session stays at epoch 1."""
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(create_app(keeper)) as client:
        first = await _start(client)
        sid = first["session_id"]
        pre = (await client.post("/v1/preflight", json={"token": sid})).json()
        reply = await client.post("/v1/resume", json={"token": sid, "takeover": True})
        state = await keeper.load(sid)
    assert ("invalid", 401, "token_invalid", "invalid", 1) == (
        pre["status"],
        reply.status_code,
        reply.json()["error"]["code"],
        reply.json()["preflight"]["status"],
        state.epoch,
    )


async def test_on_session_is_handed_each_session_and_keeps_it(url: str) -> None:
    """With on_session the app hands over the live session instead of releasing it."""
    seen: list[tuple[str, callstate.Session]] = []
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(
        create_app(keeper, WebOptions(on_session=lambda how, s: seen.append((how, s))))
    ) as client:
        first = await _start(client)
        seen[0][1].connection_lost("page reload")  # the first tab's link is gone
        await client.post("/v1/resume", json={"token": first["token"]})
        assert [("start", 1), ("resume", 2)] == [(how, s.state.epoch) for how, s in seen]
        assert not seen[1][1].closed  # the app's to drive, not released


async def test_a_second_tab_gets_session_active_unless_it_takes_over(url: str) -> None:
    """While the first tab's link is up, a resume is 409 session_active; takeover wins."""
    seen: list[callstate.Session] = []
    keeper = callstate.Keeper(url, secret=SECRET)
    app = create_app(keeper, WebOptions(on_session=lambda how, s: seen.append(s)))
    async with serving(app) as client:
        first = await _start(client)
        refused = await client.post("/v1/resume", json={"token": first["token"]})
        taken = await client.post("/v1/resume", json={"token": first["token"], "takeover": True})
    assert (409, "session_active") == (refused.status_code, refused.json()["error"]["code"])
    assert (200, 2) == (taken.status_code, taken.json()["epoch"])


async def test_a_refused_resume_carries_the_preflight_answer_and_takes_nothing(
    url: str,
) -> None:
    """A refused /v1/resume carries what /v1/preflight answers for the same token
    (active, superseded, invalid, ended), and the session's epoch does not move."""
    live: list[callstate.Session] = []
    keeper = callstate.Keeper(url, secret=SECRET)
    app = create_app(keeper, WebOptions(on_session=lambda how, s: live.append(s)))
    answers: list[tuple[int, str, dict[str, Any], dict[str, Any], int]] = []
    async with serving(app) as client:

        async def refuse(token: str) -> None:
            reply = await client.post("/v1/resume", json={"token": token})
            pre = (await client.post("/v1/preflight", json={"token": token})).json()
            epoch = (await keeper.load(live[0].id)).epoch
            body = reply.json()
            answers.append(
                (reply.status_code, body["error"]["code"], body["preflight"], pre, epoch)
            )

        first = await _start(client)  # its link is up: live in this tab
        await refuse(first["token"])
        second = (
            await client.post("/v1/resume", json={"token": first["token"], "takeover": True})
        ).json()
        await refuse(first["token"])
        await refuse(
            second["token"][:-3]
            + ("A" if second["token"][-3] != "A" else "B")
            + second["token"][-2:]
        )
        await live[-1].end(reason="caller_hangup")
        await refuse(second["token"])
    assert [
        (409, "session_active", "active", 1),
        (409, "token_superseded", "superseded", 2),
        (401, "token_invalid", "invalid", 2),
        (410, "call_ended", "ended", 2),
    ] == [(status, code, got["status"], epoch) for status, code, got, _, epoch in answers]
    assert [pre for *_, pre, _ in answers] == [got for *_, got, _, _ in answers]


class _HeldRelease:
    """The real store, whose lease releases wait while ``go`` is clear."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.go = asyncio.Event()
        self.go.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def release_lease(self, session_id: str, owner: str) -> None:
        await self.go.wait()
        await self.inner.release_lease(session_id, owner)


async def test_the_answer_does_not_wait_for_releasing_a_session_nobody_here_drives(
    url: str,
) -> None:
    """Without on_session, a resume answers while its lease release is still pending
    (the release lands once the store lets it); a start answers after its release."""
    store = _HeldRelease(open_store(url))
    keeper = callstate.Keeper(store, secret=SECRET)  # type: ignore[arg-type]
    app = create_app(keeper)
    async with serving(app) as client:
        first = await _start(client)
        started = await keeper.store.get(first["session_id"])
        store.go.clear()
        try:  # a resume that waited for its release would never answer
            async with asyncio.timeout(10):
                reply = await client.post("/v1/resume", json={"token": first["token"]})
        finally:
            held = (await keeper.store.get(first["session_id"])).lease_owner  # type: ignore[union-attr]
            store.go.set()
        await asyncio.gather(*app.state.callstate.letting_go)
        after = await keeper.store.get(first["session_id"])
    assert (None, 200, keeper.owner, None) == (
        started and started.lease_owner,
        reply.status_code,
        held,
        after and after.lease_owner,
    )


async def test_the_openapi_doc_shows_the_preflight_answer_in_a_resume_refusal(url: str) -> None:
    """/v1/openapi.json documents `preflight` beside `error` in /v1/resume's 4xx
    answers, with every status a Preflight can have."""
    keeper = callstate.Keeper(url, secret=SECRET)
    async with serving(create_app(keeper)) as client:
        doc = (await client.get("/v1/openapi.json")).json()
    answers = doc["paths"]["/v1/resume"]["post"]["responses"]
    shapes = [answers[s]["content"]["application/json"]["schema"] for s in ("401", "409", "410")]
    statuses = [
        shape["properties"]["preflight"]["properties"]["status"]["enum"] for shape in shapes
    ]
    assert [sorted(get_args(PreflightStatus))] * 3 == [sorted(s) for s in statuses]
    assert "preflight" not in answers["400"]["content"]["application/json"]["schema"]["properties"]


async def test_cors_allows_only_the_configured_origins(url: str) -> None:
    """A configured origin gets the CORS headers on a preflight request; another does not."""
    keeper = callstate.Keeper(url, secret=SECRET)
    app = create_app(keeper, WebOptions(cors_origins=("https://app.example",)))
    async with serving(app) as client:
        asked = {"access-control-request-method": "POST"}
        ok = await client.options("/v1/resume", headers={"origin": "https://app.example", **asked})
        no = await client.options("/v1/resume", headers={"origin": "https://evil.example", **asked})
    assert "https://app.example" == ok.headers.get("access-control-allow-origin")
    assert no.headers.get("access-control-allow-origin") is None


async def test_it_mounts_into_an_existing_app_in_one_line(url: str) -> None:
    """app.mount("/callstate", create_app(keeper)) serves the endpoints under the prefix."""
    keeper = callstate.Keeper(url, secret=SECRET)
    host = Starlette(routes=[Mount("/callstate", create_app(keeper))])
    async with serving(host) as client:
        reply = await client.post("/callstate/v1/start", json={})
        doc = (await client.get("/callstate/v1/openapi.json")).json()
    await keeper.close()
    assert 201 == reply.status_code
    assert {"/v1/preflight", "/v1/start", "/v1/resume", "/v1/token/refresh"} == set(doc["paths"])


async def test_without_a_secret_start_is_a_config_error(url: str) -> None:
    """A keeper that cannot sign tokens answers 500 config_error, naming the secret."""
    keeper = callstate.Keeper(url)
    async with serving(create_app(keeper)) as client:
        reply = await client.post("/v1/start", json={})
    assert (500, "config_error") == (reply.status_code, reply.json()["error"]["code"])
    assert "secret" in reply.json()["error"]["message"]


@pytest.fixture(params=["redis", "postgres"])
async def server_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Store]]:
    if request.param == "redis":
        from callstate.storage.redis import RedisStore

        url, prefix = redis_url(), unique("web")
        yield lambda: RedisStore(url, prefix=prefix)
        await drop_redis_prefix(url, prefix)
    else:
        from callstate.storage.postgres import PostgresStore

        url, schema = postgres_url(), unique("web")
        yield lambda: PostgresStore(url, schema=schema)
        await drop_pg_schema(url, schema)


async def test_resume_through_the_app_on_redis_and_postgres(
    server_store: Callable[[], Store],
) -> None:
    """Start in one app, resume by token through a second app on another keeper."""
    one = callstate.Keeper(server_store(), secret=SECRET)
    two = callstate.Keeper(server_store(), secret=SECRET)
    async with serving(create_app(one)) as a, serving(create_app(two)) as b:
        first = await _start(a, caller="+15551234567")
        reply = await b.post("/v1/resume", json={"token": first["token"]})
    assert (200, 2) == (reply.status_code, reply.json()["epoch"])


async def test_callstate_serve_answers_over_http(tmp_path: Path) -> None:
    """`callstate serve --db ... --port N` runs the app: start answers 201 with a token."""
    import asyncio
    import os
    import sys

    from services import free_port

    port = free_port()
    env = {**os.environ, "CALLSTATE_SECRET": SECRET.decode()}
    db = str(tmp_path / "serve.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callstate", "serve", "--db", db, "--port", str(port), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            async with asyncio.timeout(60):
                while True:
                    try:
                        reply = await client.post("/v1/start", json={"agent": "web"})
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        await proc.communicate()
    assert (201, "web") == (reply.status_code, reply.json()["agent"])
    assert reply.json()["token"].startswith("cs1.")

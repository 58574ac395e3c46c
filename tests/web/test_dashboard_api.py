"""The dashboard's JSON endpoints over real HTTP, on a SQLite store seeded with real calls:
off by default, the operator token, the call list and its filters, a call's timeline
(from the journal, and from the archive once the journal is purged), recovery quality."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import callstate
from callstate.testing import FakeClock
from callstate.web import WebOptions, create_app

from .conftest import serving
from .dashboard_calls import CALLER, SECRET, Rig, Seeded, seed

README = Path(__file__).resolve().parents[2] / "README.md"
TOKEN = "operator-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclass
class Served:
    """A dashboard over a seeded store: its client, the seeded ids and the rig."""

    client: httpx.AsyncClient
    ids: Seeded
    rig: Rig

    async def get(self, path: str, **params: Any) -> Any:
        reply = await self.client.get(path, params=params, headers=AUTH)
        assert 200 == reply.status_code, reply.text
        return reply.json()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The seeded calls, served with the dashboard on."""
    rig = Rig(f"sqlite:///{tmp_path}/cs.db", FakeClock(time.time() - 7_200))
    async with rig.keeper:
        ids = await seed(rig)
        app = create_app(rig.keeper, WebOptions(dashboard=True, dashboard_token=TOKEN))
        async with serving(app) as client:
            yield Served(client, ids, rig)


async def test_the_dashboard_is_off_by_default(tmp_path: Path) -> None:
    """Without dashboard=True neither the data endpoints nor the pages exist."""
    keeper = callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET)
    async with serving(create_app(keeper)) as client:
        data = await client.get("/v1/dashboard/calls", headers=AUTH)
        page = await client.get("/dashboard/")
        doc = (await client.get("/v1/openapi.json")).json()
    assert (404, 404) == (data.status_code, page.status_code)
    assert [] == [p for p in doc["paths"] if "dashboard" in p]


@pytest.mark.parametrize("token", [None, "short", 1234])
def test_turning_it_on_without_a_real_token_is_refused(tmp_path: Path, token: Any) -> None:
    """dashboard=True needs a dashboard_token of 16+ characters; the error names it."""
    keeper = callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET)
    with pytest.raises(callstate.ConfigError, match="dashboard_token"):
        create_app(keeper, WebOptions(dashboard=True, dashboard_token=token))


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}"])
async def test_data_needs_the_operator_token(served: Served, header: str | None) -> None:
    """No token, a wrong one, or another scheme: 401 unauthorized and no data."""
    headers = {} if header is None else {"authorization": header}
    reply = await served.client.get("/v1/dashboard/calls", headers=headers)
    assert (401, "unauthorized") == (reply.status_code, reply.json()["error"]["code"])
    assert "calls" not in reply.json()


async def test_the_pages_load_without_the_token_and_forbid_other_origins(served: Served) -> None:
    """The page holds no data: it loads without the token, with a same-origin CSP."""
    reply = await served.client.get("/dashboard/")
    assert 200 == reply.status_code
    assert '<script type="module" src="app.js">' in reply.text
    assert "default-src 'self'" in reply.headers["content-security-policy"]
    assert "no-referrer" == reply.headers["referrer-policy"]


async def test_the_call_list_has_one_row_per_call_and_never_a_caller_id(served: Served) -> None:
    """Five calls, latest first; the booking has its three legs' outcomes; callers are
    named only by a tag, never by their number."""
    reply = await served.client.get("/v1/dashboard/calls", headers=AUTH)
    rows = reply.json()["calls"]
    ids = served.ids
    assert [ids.abandoned, ids.in_doubt, ids.failed, ids.booking, ids.completed] == [
        r["session_id"] for r in rows
    ]
    assert (2, 1, 1) == (rows[1]["legs"], rows[1]["tools"], rows[1]["in_doubt"])
    booking = rows[3]
    assert (3, ["superseded", "completed", "recovered"]) == (booking["legs"], booking["outcomes"])
    assert (["triage", "billing"], 3, 1, 1, 1) == (
        booking["agents"],
        booking["tools"],
        booking["barge_ins"],
        booking["resumes"],
        booking["handoffs"],
    )
    assert 10 == len(booking["caller_tag"])
    assert CALLER not in reply.text
    assert CALLER.lstrip("+") not in reply.text


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"outcome": "failed"}, ["failed"]),
        ({"outcome": "superseded"}, ["in_doubt", "booking"]),
        ({"health": "caller_never_returned"}, ["abandoned"]),
        ({"agent": "billing"}, ["booking"]),
        ({"outcome": "abandoned", "agent": "billing"}, []),
    ],
)
async def test_filters_narrow_the_list(
    served: Served, params: dict[str, str], expected: list[str]
) -> None:
    """Outcome, health and agent filters match a call when any of its legs matches."""
    rows = (await served.get("/v1/dashboard/calls", **params))["calls"]
    assert [getattr(served.ids, name) for name in expected] == [r["session_id"] for r in rows]


async def test_a_caller_tag_and_a_session_prefix_find_the_call(served: Served) -> None:
    """Filtering by the listed caller tag, or by a prefix of the id, finds that call."""
    rows = (await served.get("/v1/dashboard/calls"))["calls"]
    tag = next(r["caller_tag"] for r in rows if r["session_id"] == served.ids.booking)
    by_tag = (await served.get("/v1/dashboard/calls", caller_tag=tag))["calls"]
    by_id = (await served.get("/v1/dashboard/calls", session=served.ids.failed[:8]))["calls"]
    assert [served.ids.booking] == [r["session_id"] for r in by_tag]
    assert [served.ids.failed] == [r["session_id"] for r in by_id]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/dashboard/calls", {"outcome": "lost"}, "outcome"),
        ("/v1/dashboard/calls", {"health": "fine"}, "health"),
        ("/v1/dashboard/calls", {"limit": "0"}, "limit"),
        ("/v1/dashboard/calls", {"since": "nan"}, "since"),
        ("/v1/dashboard/quality", {"bucket": "1"}, "bucket"),
        ("/v1/dashboard/quality", {"since": "100", "until": "50"}, "since"),
    ],
)
async def test_bad_query_parameters_get_400_naming_them(
    served: Served, path: str, params: dict[str, str], field: str
) -> None:
    """A bad filter is a 400 bad_request whose message names the parameter."""
    reply = await served.client.get(path, params=params, headers=AUTH)
    error = reply.json()["error"]
    assert (400, "bad_request") == (reply.status_code, error["code"])
    assert f"`{field}`" in error["message"]


async def test_the_timeline_has_every_leg_and_what_happened_in_it(served: Served) -> None:
    """The booking's timeline: three legs (start, handoff, resume) with their outcomes,
    the barge-in that overtook the write, each tool call with its deliveries, the hold
    and the resume's wait for the link, the handoff and the follow-up."""
    t = await served.get(f"/v1/dashboard/calls/{served.ids.booking}/timeline")
    assert "journal" == t["source"]
    assert [
        (1, "start", "superseded"),
        (2, "handoff", "completed"),
        (3, "resume", "recovered"),
    ] == [(leg["epoch"], leg["via"], leg["outcome"]) for leg in t["legs"]]
    assert [(1, ["c2"])] == [(b["leg"], b["overtaken"]) for b in t["barge_ins"]]
    assert [
        ("c1", 1, "succeeded", []),
        ("c2", 1, "succeeded", ["held", "announced"]),
        ("c3", 2, "succeeded", []),
    ] == [
        (c["call_id"], c["leg"], c["status"], [d["decision"] for d in c["deliveries"]])
        for c in t["tools"]
    ]
    assert [(1, "network switch"), (3, "resumed")] == [(h["leg"], h["reason"]) for h in t["holds"]]
    assert [(1, "offered"), (2, "accepted")] == [(h["leg"], h["kind"]) for h in t["handoffs"]]
    assert [(3, "resume")] == [(r["leg"], r["via"]) for r in t["resumes"]]
    assert [("summary", True, 3)] == [(f["name"], f["ok"], f["leg"]) for f in t["followups"]]
    interrupted = [s for s in t["speech"] if s.get("interrupted")]
    assert ["Eight is free. Moving your booking now,"] == [s["heard"] for s in interrupted]


async def test_a_purged_journal_is_drawn_from_the_archive(served: Served) -> None:
    """Once the resume state is purged, the timeline comes from the legs' records."""
    await served.rig.keeper.store.purge(served.ids.booking)
    t = await served.get(f"/v1/dashboard/calls/{served.ids.booking}/timeline")
    assert "archive" == t["source"]
    assert [1, 2, 3] == [leg["epoch"] for leg in t["legs"]]
    assert ["c1", "c2", "c3"] == [c["call_id"] for c in t["tools"]]
    assert 1 == len(t["barge_ins"])


async def test_an_unknown_call_is_404(served: Served) -> None:
    """A session id the store does not hold: 404 session_not_found."""
    reply = await served.client.get("/v1/dashboard/calls/nope/timeline", headers=AUTH)
    assert (404, "session_not_found") == (reply.status_code, reply.json()["error"]["code"])


async def test_quality_counts_resumes_and_abandoned_calls(served: Served) -> None:
    """Over the seeded window: eight legs, two resumed (7 s and 26 s gaps) and one
    abandoned (a 2/3 recovered rate), one in-doubt call of four."""
    now = served.rig.clock.now()
    q = await served.get(
        "/v1/dashboard/quality", since=now - 6 * 3_600, until=now, bucket=6 * 3_600
    )
    [b] = q["buckets"]
    assert (8, 2, 1, 4, 1) == (b["legs"], b["resumed"], b["abandoned"], b["tools"], b["in_doubt"])
    assert (2 / 3, 0.25) == (pytest.approx(b["recovered_rate"]), b["in_doubt_rate"])
    assert (7.0, 26.0) == (pytest.approx(b["recover_p50_s"]), pytest.approx(b["recover_p95_s"]))
    assert 8 == sum(b["health"].values())


async def test_quality_lists_every_bucket_of_the_range(served: Served) -> None:
    """Six hourly buckets over six hours, empty ones with zero counts and no rates."""
    now = served.rig.clock.now()
    q = await served.get("/v1/dashboard/quality", since=now - 6 * 3_600, until=now, bucket=3_600)
    buckets = q["buckets"]
    assert [now - 6 * 3_600 + i * 3_600 for i in range(6)] == [b["start"] for b in buckets]
    assert 8 == sum(b["legs"] for b in buckets)
    empty = [b for b in buckets if not b["legs"]]
    assert all(b["recovered_rate"] is None and b["recover_p50_s"] is None for b in empty)


async def test_the_openapi_doc_describes_the_dashboard_when_it_is_on(served: Served) -> None:
    """/v1/openapi.json lists the three dashboard endpoints and the bearer scheme."""
    doc = (await served.client.get("/v1/openapi.json")).json()
    assert [
        "/v1/dashboard/calls",
        "/v1/dashboard/calls/{session_id}/timeline",
        "/v1/dashboard/quality",
    ] == [p for p in doc["paths"] if "dashboard" in p]
    assert "bearer" == doc["components"]["securitySchemes"]["dashboardToken"]["scheme"]


async def test_the_readme_lines_turn_the_dashboard_on(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's dashboard block, run as written with a keeper, serves the page and
    opens the data to its token."""
    text = README.read_text()
    section = text[text.index("**Dashboard.**") :]
    [code] = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)[:1]
    monkeypatch.setenv("CALLSTATE_DASHBOARD_TOKEN", TOKEN)
    scope: dict[str, Any] = {"keeper": served.rig.keeper}
    exec(compile(code, "README.md", "exec"), scope)
    async with serving(scope["app"]) as client:
        page = await client.get("/dashboard/")
        data = await client.get("/v1/dashboard/calls", headers=AUTH)
    assert (200, 5) == (page.status_code, len(data.json()["calls"]))

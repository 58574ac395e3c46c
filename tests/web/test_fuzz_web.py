"""Fuzz of the web endpoints: any body, any content type, to any endpoint, answers JSON
with a status below 500 and a stable error code, and loses nothing already stored."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from starlette.testclient import TestClient

import callstate
from callstate.web import create_app
from fuzzing import EXAMPLES, fuzz, hostile_text, json_values

SECRET = b"web-fuzz-secret-0123456789abcdef"
PATHS = ["/v1/preflight", "/v1/start", "/v1/resume", "/v1/token/refresh"]

bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.fixed_dictionaries(
        {"token": hostile_text},
        optional={"takeover": st.one_of(st.booleans(), hostile_text), "x": json_values},
    ).map(lambda d: json.dumps(d).encode("utf-8", "surrogatepass")),
    st.fixed_dictionaries({}, optional={"caller": hostile_text, "agent": hostile_text}).map(
        lambda d: json.dumps(d).encode("utf-8", "surrogatepass")
    ),
)
requests = st.tuples(
    st.sampled_from(PATHS),
    bodies,
    st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8", ""]),
)


def test_every_endpoint_answers_any_body_with_json_and_no_500() -> None:
    """>= EXAMPLES hostile requests: JSON answers, status < 500, errors carry a code."""
    keeper = callstate.Keeper("memory://", secret=SECRET)
    with TestClient(create_app(keeper)) as client:
        first = client.post("/v1/start", json={"caller": "+15551234567"}).json()

        def check(case: tuple[str, bytes, str]) -> None:
            path, body, kind = case
            headers = {"content-type": kind} if kind else {}
            reply = client.post(path, content=body, headers=headers)
            data: Any = reply.json()
            assert reply.status_code < 500, (reply.status_code, data)
            if reply.status_code >= 400:
                assert isinstance(data["error"]["code"], str)
                assert isinstance(data["error"]["message"], str)

        ran = fuzz(requests, check, EXAMPLES)
        resumed = client.post("/v1/resume", json={"token": first["token"], "takeover": True})
    assert ran >= EXAMPLES
    assert (200, first["session_id"]) == (resumed.status_code, resumed.json()["session_id"])

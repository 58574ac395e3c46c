"""The browser client as the app serves it: content types, caching, ETag, and types that
declare everything the module exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import callstate
from callstate.web import create_app

from .conftest import serving

STATIC = Path(callstate.__file__).parent / "web" / "static"
SECRET = b"web-client-test-secret-0123456789"


@pytest.fixture
def keeper(tmp_path: Path) -> callstate.Keeper:
    return callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET)


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/callstate.js", "text/javascript; charset=utf-8"),
        ("/callstate.d.ts", "application/typescript; charset=utf-8"),
    ],
)
async def test_the_client_is_served_as_shipped_with_its_type_and_an_etag(
    keeper: callstate.Keeper, path: str, media_type: str
) -> None:
    """GET answers the shipped bytes, the content type, no-cache and a strong ETag."""
    async with serving(create_app(keeper)) as client:
        reply = await client.get(path)
    assert 200 == reply.status_code
    assert (STATIC / path.lstrip("/")).read_bytes() == reply.content
    assert media_type == reply.headers["content-type"]
    assert ("no-cache", "nosniff") == (
        reply.headers["cache-control"],
        reply.headers["x-content-type-options"],
    )
    assert re.fullmatch(r'"[0-9a-f]{32}"', reply.headers["etag"])


async def test_a_matching_etag_gets_304_and_head_gets_no_body(keeper: callstate.Keeper) -> None:
    """If-None-Match with the current ETag is 304 with no body; HEAD is 200, empty, sized."""
    async with serving(create_app(keeper)) as client:
        first = await client.get("/callstate.js")
        again = await client.get("/callstate.js", headers={"if-none-match": first.headers["etag"]})
        other = await client.get("/callstate.js", headers={"if-none-match": '"stale"'})
        head = await client.head("/callstate.js")
    assert (304, b"", first.headers["etag"]) == (
        again.status_code,
        again.content,
        again.headers["etag"],
    )
    assert (200, first.content) == (other.status_code, other.content)
    assert (200, b"", str(len(first.content))) == (
        head.status_code,
        head.content,
        head.headers["content-length"],
    )


def _js() -> str:
    return (STATIC / "callstate.js").read_text()


def _dts() -> str:
    return (STATIC / "callstate.d.ts").read_text()


def test_the_module_exports_what_is_pinned() -> None:
    """callstate.js exports exactly the client, its error and VERSION."""
    exported = set(re.findall(r"^export (?:const|class|function|let) (\w+)", _js(), flags=re.M))
    assert {"CallstateClient", "CallstateError", "VERSION"} == exported


def test_the_declarations_name_every_export_of_the_module() -> None:
    """Every name callstate.js exports is declared in callstate.d.ts."""
    exported = set(re.findall(r"^export (?:const|class|function|let) (\w+)", _js(), flags=re.M))
    declared = set(
        re.findall(
            r"^export (?:declare )?(?:const|class|function|interface|type) (\w+)",
            _dts(),
            flags=re.M,
        )
    )
    assert set() == exported - declared


def test_the_declarations_name_every_public_member_of_the_client() -> None:
    """Every public method and getter of CallstateClient has a declaration."""
    body = _js().split("export class CallstateClient", 1)[1]
    members = set(re.findall(r"^  (?:async |get )?([a-z]\w*)\(", body, flags=re.M)) - {
        "constructor"
    }
    dts = _dts().split("export declare class CallstateClient", 1)[1]
    declared = set(re.findall(r"^  (?:readonly )?([a-z]\w*)[(:?<]", dts, flags=re.M))
    assert {"start", "takeover", "send", "refresh", "detach", "end", "dispose"} <= members
    assert set() == members - declared

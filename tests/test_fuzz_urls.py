"""Fuzzing open_store: any URL and options give a Store or a ConfigError, never a raw
ValueError, TypeError or AttributeError."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

import callstate
from callstate import ConfigError
from fuzzing import EXAMPLES, any_char, fuzz, hostile_text

schemes = st.sampled_from(
    ["memory", "sqlite", "redis", "rediss", "postgresql", "postgres", "http", "", "REDIS"]
)
hosts = st.one_of(
    st.sampled_from(
        ["localhost", "127.0.0.1", "[::1]", "[::1", "::1]", "[zz]", "[v1.x]", "", "h1,h2", "@"]
    ),
    hostile_text,
)
ports = st.one_of(
    st.none(),
    st.integers(min_value=-5, max_value=70_000).map(str),
    st.sampled_from(["", "abc", "6379,6380", "0x10", "١٢"]),
    hostile_text,
)
query_keys = st.sampled_from(
    ["prefix", "schema", "db", "pool_size", "sslmode", "socket_timeout", "ssl_cert_reqs", "x"]
)
queries = st.lists(
    st.tuples(st.one_of(query_keys, hostile_text), st.one_of(hostile_text, st.just("1"))),
    max_size=3,
).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))


@st.composite
def urls(draw: st.DrawFn) -> str:
    """A URL assembled from hostile parts (scheme, host, port, path, query)."""
    url = f"{draw(schemes)}://{draw(hosts)}"
    port = draw(ports)
    if port is not None:
        url += f":{port}"
    url += "/" + draw(st.one_of(st.sampled_from(["0", "test", "x.db", ":memory:"]), hostile_text))
    query = draw(queries)
    return f"{url}?{query}" if query else url


option_names = st.sampled_from(
    [
        "prefix",
        "schema",
        "pool_size",
        "retry_for",
        "timeout",
        "connect_timeout",
        "busy_timeout",
        "synchronous",
        "wait_aof",
        "cluster",
        "bogus",
    ]
)
option_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=100),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=3),
)
cases = st.tuples(
    st.one_of(
        urls(),
        st.text(any_char, max_size=60),
        st.none(),
        st.integers(),
        st.binary(max_size=30),
        st.floats(),
    ),
    st.dictionaries(option_names, option_values, max_size=2),
)


def test_open_store_raises_only_config_errors() -> None:
    """On >= EXAMPLES fuzzed URLs and options open_store makes a Store or raises ConfigError."""
    made = [0]

    def check(case: tuple[Any, dict[str, Any]]) -> None:
        url, options = case
        try:
            store = callstate.open_store(url, **options)
        except ConfigError:
            return
        assert isinstance(store, callstate.Store)
        made[0] += 1

    assert fuzz(cases, check, EXAMPLES) >= EXAMPLES
    assert made[0] > 0

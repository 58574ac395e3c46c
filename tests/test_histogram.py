"""LogHistogram: mergeable percentiles within the stated relative error of exact ones."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate.archive.fleet import percentiles
from callstate.storage.histogram import (
    MIN_SECONDS,
    RELATIVE_ERROR,
    LogHistogram,
    bucket_of,
    value_of,
)

QUANTILES = (0.5, 0.9, 0.99, 1.0)
seconds = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=MIN_SECONDS, exclude_max=True),
    st.floats(min_value=MIN_SECONDS, max_value=1e6),
)
samples = st.lists(seconds, min_size=1, max_size=300)


def _exact(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def _within(expected: float, got: float) -> bool:
    if expected < MIN_SECONDS:
        return got == 0.0
    # a hair over the bound for the float rounding of log() at a bucket's edge
    return abs(got - expected) <= expected * RELATIVE_ERROR * (1 + 1e-9)


@given(samples)
@settings(max_examples=500)
def test_percentiles_are_within_the_stated_bound_of_exact_ones(values: list[float]) -> None:
    """Every nearest-rank percentile is within RELATIVE_ERROR of the exact one (0 below
    MIN_SECONDS); count and max are exact."""
    hist = LogHistogram.of(values)
    assert len(values) == hist.count
    assert max(values) == hist.max
    for p in QUANTILES:
        assert _within(_exact(values, p), hist.quantile(p)), p


@given(st.lists(samples, min_size=1, max_size=6))
@settings(max_examples=300)
def test_merging_equals_one_histogram_of_all_samples(parts: list[list[float]]) -> None:
    """Merging per-part histograms in any order gives the histogram of all the samples."""
    whole = LogHistogram.of(v for part in parts for v in part)
    merged = LogHistogram()
    for part in reversed(parts):
        merged = merged.merge(LogHistogram.of(part))
    assert whole == merged
    assert whole == LogHistogram.from_counts(merged.zeros, merged.buckets, merged.max)


@given(st.floats(min_value=MIN_SECONDS, max_value=1e9))
def test_a_sample_reads_back_within_the_bound(value: float) -> None:
    """A sample's bucket reads back within RELATIVE_ERROR of it."""
    bucket = bucket_of(value)
    assert bucket is not None
    assert _within(value, value_of(bucket))


def test_matches_the_exact_percentiles_of_fleet_figures() -> None:
    """On a plain distribution the histogram agrees with fleet's exact percentiles."""
    values = [0.5 * i for i in range(1, 201)]
    exact = percentiles(values)
    assert exact is not None
    hist = LogHistogram.of(values)
    for p, want in ((0.5, exact.p50), (0.9, exact.p90), (0.99, exact.p99), (1.0, exact.max)):
        assert _within(want, hist.quantile(p))


def test_round_trips_through_msgspec() -> None:
    """A histogram encodes and decodes as JSON unchanged (stores may keep it that way)."""
    hist = LogHistogram.of([0.0, 0.002, 1.5, 1.5, 90.0])
    assert hist == msgspec.json.decode(msgspec.json.encode(hist), type=LogHistogram)


def test_an_empty_histogram_or_a_bad_p_is_refused() -> None:
    """quantile refuses an empty histogram and a p outside (0, 1], naming the p."""
    with pytest.raises(ValueError, match="empty"):
        LogHistogram().quantile(0.5)
    with pytest.raises(ValueError, match=r"1\.5"):
        LogHistogram.of([1.0]).quantile(1.5)

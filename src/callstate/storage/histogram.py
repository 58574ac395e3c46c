"""``LogHistogram``: a mergeable summary of seconds for rolled-up percentiles. Pure.

A sample of ``v`` seconds is counted in a fixed log-scale bucket: bucket ``i`` holds
``GAMMA**(i-1) < v <= GAMMA**i`` with ``GAMMA = (1 + RELATIVE_ERROR) / (1 -
RELATIVE_ERROR)``, and reads back as ``2 * GAMMA**i / (GAMMA + 1)``, the point whose
relative distance to both ends of the bucket is the same. Buckets never depend on the
data, so two histograms merge by adding counts, in any order and grouping: a store can
keep one per time bucket and sum them for any window.

Error bound: a nearest-rank percentile read from a histogram is within
``RELATIVE_ERROR`` (1%) of the exact nearest-rank percentile of the same samples, for
samples of at least ``MIN_SECONDS`` (1 ms); samples below that (and zero) are counted
as zero, so a percentile that falls among them reads 0.0, off by under 1 ms. The count
and the maximum are exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import msgspec

__all__ = ["GAMMA", "MIN_SECONDS", "RELATIVE_ERROR", "LogHistogram", "bucket_of", "value_of"]

#: the largest relative error of a percentile read from a histogram
RELATIVE_ERROR = 0.01
#: the ratio between the two ends of a bucket
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
#: samples below this many seconds are counted as zero
MIN_SECONDS = 0.001
_LOG_GAMMA = math.log(GAMMA)


def bucket_of(seconds: float) -> int | None:
    """The bucket a sample is counted in (None: it counts as zero)."""
    if not seconds >= MIN_SECONDS:  # also NaN
        return None
    return math.ceil(math.log(seconds) / _LOG_GAMMA)


def value_of(bucket: int) -> float:
    """The seconds bucket ``bucket`` reads back as."""
    return 2 * GAMMA**bucket / (GAMMA + 1)


class LogHistogram(msgspec.Struct, frozen=True, kw_only=True):
    """Samples of seconds counted per log-scale bucket (see the module docstring).

    Args:
        count: how many samples, exactly.
        zeros: samples below ``MIN_SECONDS``.
        buckets: samples per bucket index (``bucket_of``).
        max: the largest sample, exactly (0.0 when there are none).
    """

    count: int = 0
    zeros: int = 0
    buckets: dict[int, int] = {}
    max: float = 0.0

    @classmethod
    def of(cls, samples: Iterable[float]) -> LogHistogram:
        """The histogram of ``samples``."""
        zeros, worst, buckets = 0, 0.0, dict[int, int]()
        count = 0
        for s in samples:
            count += 1
            worst = max(worst, s)
            b = bucket_of(s)
            if b is None:
                zeros += 1
            else:
                buckets[b] = buckets.get(b, 0) + 1
        return cls(count=count, zeros=zeros, buckets=buckets, max=worst)

    @classmethod
    def from_counts(cls, zeros: int, buckets: Mapping[int, int], worst: float) -> LogHistogram:
        """A histogram from counts a store kept (zero counts dropped)."""
        kept = {b: n for b, n in buckets.items() if n}
        return cls(count=zeros + sum(kept.values()), zeros=zeros, buckets=kept, max=worst)

    def merge(self, other: LogHistogram) -> LogHistogram:
        """The histogram of both histograms' samples."""
        buckets = dict(self.buckets)
        for b, n in other.buckets.items():
            buckets[b] = buckets.get(b, 0) + n
        return LogHistogram(
            count=self.count + other.count,
            zeros=self.zeros + other.zeros,
            buckets=buckets,
            max=max(self.max, other.max),
        )

    def quantile(self, p: float) -> float:
        """The nearest-rank ``p`` percentile (``0 < p <= 1``), within the stated bound.

        Raises:
            ValueError: the histogram is empty, or ``p`` is outside ``(0, 1]``.
        """
        if not 0 < p <= 1:
            msg = f"p must be in (0, 1], got {p!r}"
            raise ValueError(msg)
        if not self.count:
            msg = "an empty histogram has no percentiles"
            raise ValueError(msg)
        rank = max(1, math.ceil(p * self.count))
        if rank <= self.zeros:
            return 0.0
        seen = self.zeros
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                # the exact value is at most the maximum, so clamping only gets closer
                return min(value_of(b), self.max)
        return self.max

"""Per-operation request throttling: token buckets, plus "throttle the next N calls".

Off by default. AWS publishes no default rate for the training job operations; one report puts
ListTrainingJobs at about 2 requests per second (unverified), so none is assumed here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class _Bucket:
    rate: float
    tokens: float
    stamp: float

    @property
    def burst(self) -> float:
        return max(1.0, self.rate)


class Throttler:
    """Decide whether a call of an operation goes through.

    :param rates: requests per second per operation name (``DescribeTrainingJob``...).
    """

    def __init__(self, rates: Mapping[str, float] | None = None) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        for operation, rate in (rates or {}).items():
            self.set_rate(operation, rate)

    def set_rate(self, operation: str, rate: float | None, now: float = 0.0) -> None:
        """Throttle an operation to ``rate`` requests per second; None lifts the limit.

        :param operation: the operation name.
        :param rate: requests per second (burst: one second's worth, at least one request).
        :param now: monotonic seconds (the bucket starts full).
        """
        with self._lock:
            if rate is None:
                self._buckets.pop(operation, None)
            else:
                if rate <= 0:
                    raise ValueError(f"throttle rate of {operation} must be > 0, got {rate}")
                self._buckets[operation] = _Bucket(rate, max(1.0, rate), now)

    def add_count(self, operation: str, count: int) -> None:
        """Throttle the next ``count`` calls of an operation.

        :param operation: the operation name.
        :param count: how many calls.
        """
        with self._lock:
            self._counts[operation] = self._counts.get(operation, 0) + count

    def clear(self) -> None:
        """Lift every throttle."""
        with self._lock:
            self._buckets.clear()
            self._counts.clear()

    def allow(self, operation: str, now: float) -> bool:
        """Whether this call goes through (it consumes a token when it does).

        :param operation: the operation name.
        :param now: monotonic seconds.
        """
        with self._lock:
            left = self._counts.get(operation, 0)
            if left > 0:
                self._counts[operation] = left - 1
                return False
            bucket = self._buckets.get(operation)
            if bucket is None:
                return True
            if bucket.stamp == 0.0:
                bucket.stamp = now
            bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True
            return False

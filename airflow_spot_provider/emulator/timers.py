"""The timer queue of the job clock: each live job's next wake-up, earliest first."""

from __future__ import annotations

import heapq


class Timers:
    """A heap of (wake-up time, job name); a job has one wake-up, the earliest asked for.

    Entries made stale by an earlier wake-up stay in the heap and are skipped when popped, so a
    wake-up costs O(log n) and a tick O(jobs due * log n).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._when: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._when)

    def wake(self, name: str, when: float) -> None:
        """Wake a job at ``when`` unless it is already due earlier.

        :param name: the job name.
        :param when: epoch seconds (0 or any past time: at the next tick; inf: never).
        """
        current = self._when.get(name)
        if current is not None and current <= when:
            return
        if when == float("inf"):
            return
        self._when[name] = when
        heapq.heappush(self._heap, (when, name))

    def pop_due(self, now: float) -> list[str]:
        """The jobs due at ``now``, removed from the queue (each once, earliest first).

        :param now: epoch seconds.
        """
        due: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, name = heapq.heappop(heap)
            if self._when.get(name) == when:
                del self._when[name]
                due.append(name)
        return due

"""Indexes of the training jobs for ``ListTrainingJobs``, and its cursor pages.

One sorted list of keys per sort order (``Name``, ``CreationTime``, ``Status``) and one by
``LastModifiedTime``; every key ends with the job name, so keys are unique. A page starts where
the cursor (the key of the last job returned) falls in the list: its cost depends on the page
size and the filters, not on the number of jobs. With ``LastModifiedTimeAfter`` the candidates are
the jobs modified since then, read from the last-modified index: a watch that lists what changed
pays for what changed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence

from airflow_spot_provider.emulator.jobs import Job

Key = tuple[float | str, ...]
KEYS: dict[str, Callable[[Job], Key]] = {
    "Name": lambda job: (job.name,),
    "CreationTime": lambda job: (job.created, job.name),
    "Status": lambda job: (job.state.status.value, job.created, job.name),
}


def _remove(keys: list[Key], key: Key) -> None:
    index = bisect.bisect_left(keys, key)
    if index < len(keys) and keys[index] == key:
        del keys[index]


class JobIndex:
    """The sorted keys of every job, kept up to date as jobs change (O(log n) + a memmove)."""

    def __init__(self) -> None:
        self.by_sort: dict[str, list[Key]] = {name: [] for name in KEYS}
        self.by_modified: list[Key] = []
        self._seen: dict[str, tuple[str, float]] = {}  # name -> (status, last modified) indexed

    def update(self, job: Job) -> None:
        """Index a new job, or re-index one whose status or LastModifiedTime changed.

        :param job: the job.
        """
        now = (job.state.status.value, job.state.last_modified)
        seen = self._seen.get(job.name)
        if seen == now:
            return
        if seen is None:
            for sort_by, key in KEYS.items():
                bisect.insort(self.by_sort[sort_by], key(job))
        else:
            _remove(self.by_sort["Status"], (seen[0], job.created, job.name))
            bisect.insort(self.by_sort["Status"], KEYS["Status"](job))
            _remove(self.by_modified, (seen[1], job.name))
        bisect.insort(self.by_modified, (job.state.last_modified, job.name))
        self._seen[job.name] = now

    def modified_after(self, after: float) -> Iterator[str]:
        """Names of the jobs whose LastModifiedTime is after ``after``.

        :param after: epoch seconds.
        """
        start = bisect.bisect_right(self.by_modified, (after, "\U0010ffff"))
        for key in self.by_modified[start:]:
            yield str(key[-1])


def page(
    keys: Sequence[Key],
    *,
    descending: bool,
    cursor: Key | None,
    size: int,
    accept: Callable[[str], bool],
) -> tuple[list[str], bool]:
    """One page of names from sorted keys, after the cursor, in the order asked.

    :param keys: sorted keys, each ending with a job name.
    :param descending: read from the end.
    :param cursor: the key of the last job of the previous page, or None.
    :param size: the page size.
    :param accept: whether a job (by name) passes the filters.
    :returns: the names, and whether a further job passes the filters.
    """
    low, high = 0, len(keys)
    if cursor is not None:
        if descending:
            high = bisect.bisect_left(keys, cursor)
        else:
            low = bisect.bisect_right(keys, cursor)
    order = range(high - 1, low - 1, -1) if descending else range(low, high)
    names: list[str] = []
    for index in order:
        name = str(keys[index][-1])
        if accept(name):
            if len(names) == size:
                return names, True
            names.append(name)
    return names, False

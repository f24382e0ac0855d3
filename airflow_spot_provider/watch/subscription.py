"""What a watch hands one trigger: its subscription (what it asked for) and the news of a cycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_spot_provider.hooks.job_calls import Lines
from airflow_spot_provider.position import Position, StreamMark


@dataclass(frozen=True)
class News:
    """What one cycle of the watch brought a subscriber (all parts may be empty: a tick).

    :param describe: the job's new description, if it was described.
    :param lines: CloudWatch lines not relayed yet, ``(stream, text)``.
    :param marks: the streams' marks once ``lines`` are relayed.
    :param notes: warnings for the trigger's log (a log read failed, List is not permitted).
    :param error: following cannot go on (a lasting API error, the watch itself failed).
    """

    describe: dict[str, Any] | None = None
    lines: Lines = field(default_factory=list)
    marks: Mapping[str, StreamMark] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: BaseException | None = None


class Subscription:
    """One trigger's interest in a job: what it wants and the queue its news arrive on.

    The trigger subscribes with the position of its kwargs, then loads the one it saved (a
    restart) and hands the merge over with :meth:`loaded`: until then the watch describes the
    job but reads none of its lines (the kwargs' marks may be older than what was relayed), and
    a job that ended meanwhile is described again once loaded, with its last lines.

    :param position: what the trigger has logged of the job, as far as its kwargs say.
    :param poll_interval: the trigger's poll interval (the watch cycles at the smallest).
    :param print_log: relay the job's CloudWatch lines (once the position is loaded).
    :param wait_first: describe the job only after one poll interval (a job just created).
    :param max_error_polls: lasting errors of the job's describe before giving up.
    :param ticks: wake the trigger every cycle, news or not (its ``stop_when`` depends on time).
    """

    def __init__(
        self,
        position: Position,
        *,
        poll_interval: float,
        print_log: bool,
        wait_first: bool,
        max_error_polls: int,
        ticks: bool,
    ) -> None:
        self.job_name = position.job_name
        self.poll_interval = poll_interval
        self._print_log = print_log
        self._loaded = False
        self._end_unread = False  # it ended before loaded: its last lines are still to read
        self.max_error_polls = max_error_polls
        self.ticks = ticks
        # The log marks of what the watch has read for this trigger (ahead of what it wrote).
        self.read = position
        first = poll_interval if wait_first and position.transitions == 0 else 0.0
        self.due: float | None = time.monotonic() + first  # its first describe; None once done
        self.queue: asyncio.Queue[News] = asyncio.Queue()

    @property
    def print_log(self) -> bool:
        """Whether the watch reads the job's lines for this trigger now (its position is loaded)."""
        return self._print_log and self._loaded

    @property
    def awaits_position(self) -> bool:
        """Whether lines are wanted but not read yet: the saved position is still loading."""
        return self._print_log and not self._loaded

    def loaded(self, position: Position) -> None:
        """The trigger merged its saved position: lines are read from its marks on.

        :param position: the merged position.
        """
        self.read = position
        self._loaded = True
        now = time.monotonic()
        # A restart (transitions logged) does not wait first; an end held back is due again.
        if self._end_unread or (position.transitions and self.due is not None and self.due > now):
            self.due = now

    def end_unread(self) -> None:
        """The job ended before the position was loaded: describe it again once it is.

        Its terminal description is held back meanwhile (the trigger would fire on it without
        the job's last lines); described again, the job's streams are read to their end.
        """
        self._end_unread = True
        if self._loaded:  # loaded while the cycle that held it back was reading logs
            self.due = time.monotonic()

    async def next(self) -> News:
        """The next news (waits for the watch's next cycle that has some)."""
        return await self.queue.get()

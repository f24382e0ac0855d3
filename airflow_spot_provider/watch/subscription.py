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

    :param position: what the trigger has logged of the job (its log marks start the reads).
    :param poll_interval: the trigger's poll interval (the watch cycles at the smallest).
    :param print_log: relay the job's CloudWatch lines.
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
        self.print_log = print_log
        self.max_error_polls = max_error_polls
        self.ticks = ticks
        # The log marks of what the watch has read for this trigger (ahead of what it wrote).
        self.read = position
        first = poll_interval if wait_first and position.transitions == 0 else 0.0
        self.due: float | None = time.monotonic() + first  # its first describe; None once done
        self.queue: asyncio.Queue[News] = asyncio.Queue()

    async def next(self) -> News:
        """The next news (waits for the watch's next cycle that has some)."""
        return await self.queue.get()

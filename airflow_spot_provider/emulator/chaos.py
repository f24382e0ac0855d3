"""A capacity gap that follows a job chain: the way to make MaxWaitTimeExceeded happen on cue.

Scenario windows are relative to the time they are loaded, which a DAG run's start-up makes
unpredictable. :class:`CapacityGap` follows the chain instead: it takes an instance type's spot
capacity away (at once, or when the chain's first job is interrupted) and gives it back once
that first job has ended, so the next attempt finds capacity. The cut at the interruption is
armed in the backend (``POST /_emulator/capacity`` with ``after_interruption_of``), which makes
it in the same step as the interruption: a watcher seeing the interruption could come after the
restart on a loaded machine. The chain's end is watched through the public API.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Self

from airflow_spot_provider.lifecycle import SecondaryStatus, TrainingJobStatus


class CapacityGap(threading.Thread):
    """Take ``instance_type`` away from the first job of a chain until that job has ended.

    Use as a context manager around the DAG run.

    :param emulator: the running :class:`~airflow_spot_provider.emulator.SpotEmulator`.
    :param instance_type: the instance type to take away.
    :param name_contains: a part of the chain's job names (its base).
    :param after_interruption: cut capacity only once the first job is interrupted (else at once).
    :param say: called with a line on each change (e.g. ``print``), or None.
    """

    def __init__(
        self,
        emulator: Any,
        instance_type: str,
        name_contains: str,
        *,
        after_interruption: bool = True,
        say: Any = None,
    ) -> None:
        super().__init__(name="capacity-gap", daemon=True)
        self.sm = emulator.boto3_client("sagemaker")
        self.admin = emulator.admin
        self.instance_type = instance_type
        self.name_contains = name_contains
        self.after_interruption = after_interruption
        self.say = say or (lambda line: None)
        self._done = threading.Event()

    def _first_job(self) -> tuple[TrainingJobStatus, SecondaryStatus | None] | None:
        # ListTrainingJobs' summaries carry both statuses: no DescribeTrainingJob calls, so
        # that a benchmark counting them counts only the provider's.
        found = self.sm.list_training_jobs(NameContains=self.name_contains, MaxResults=100)
        summaries = sorted(found["TrainingJobSummaries"], key=lambda s: s["CreationTime"])
        if not summaries:
            return None
        first = summaries[0]
        secondary = first.get("SecondaryStatus")
        return (
            TrainingJobStatus(first["TrainingJobStatus"]),
            SecondaryStatus(secondary) if secondary else None,
        )

    def _cut_fired(self) -> bool:
        overrides: dict[str, bool] = self.admin.health()["capacity_overrides"]
        return overrides.get(self.instance_type) is False

    def run(self) -> None:
        """Cut (or arm the cut), wait for the first job's end, restore."""
        cut = not self.after_interruption
        if cut:
            self.admin.set_capacity(self.instance_type, False)
        else:
            glob = f"*{self.name_contains}*"
            self.admin.set_capacity(self.instance_type, False, after_interruption_of=glob)
        said = False
        while True:
            cut = cut or self._cut_fired()
            if cut and not said:
                said = True
                self.say(f"[chaos] no more {self.instance_type} spot capacity")
            first = self._first_job()
            if (first is not None and first[0].is_terminal) or self._done.wait(0.2):
                break
        # Gives capacity back, and disarms a cut that never came.
        self.admin.set_capacity(self.instance_type, None)
        if cut:
            self.say(f"[chaos] {self.instance_type} spot capacity is back")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self.join(timeout=10)

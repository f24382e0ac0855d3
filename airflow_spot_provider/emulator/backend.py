"""Everything behind the HTTP layer, wired together; plus the admin (chaos) operations.

Lives on the emulator's event-loop thread: the HTTP handlers and the job clock share it, so no
lock is needed around job state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_spot_provider.emulator.api import SageMakerApi
from airflow_spot_provider.emulator.config import EmulatorConfig
from airflow_spot_provider.emulator.errors import AdminError
from airflow_spot_provider.emulator.events import EventLog
from airflow_spot_provider.emulator.jobs import Job
from airflow_spot_provider.emulator.logs import LogStore
from airflow_spot_provider.emulator.machine import Machine
from airflow_spot_provider.emulator.market import SpotMarket
from airflow_spot_provider.emulator.scenario import (
    InterruptAt,
    Scenario,
    ScenarioError,
    Throttle,
    parse_events,
)
from airflow_spot_provider.emulator.store import Store
from airflow_spot_provider.emulator.throttle import Throttler
from airflow_spot_provider.exceptions import shown
from airflow_spot_provider.lifecycle import BILLABLE_SECONDARY, SecondaryStatus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


_GLOB_CHARS = 1024  # a job glob of the admin API, at most (job names have 63)


class Backend:
    """The emulator's state and services.

    :param config: the configuration.
    :param s3: the S3 client bound to the emulator's S3 server.
    :param s3_endpoint_url: that server's URL (shown by the health endpoint).
    """

    def __init__(self, config: EmulatorConfig, s3: S3Client, s3_endpoint_url: str) -> None:
        self.config = config
        self.s3_endpoint_url = s3_endpoint_url
        self.started = time.time()
        self.events = EventLog()
        self.store = Store(config.db_path)
        self.logs = LogStore(self.store, config.region, config.account, config.log_cap_bytes)
        self.scenario = Scenario()
        self.market = SpotMarket(config, self.scenario)
        self.throttler = Throttler(config.throttle_rates)
        self.machine = Machine(
            config=config,
            market=self.market,
            store=self.store,
            logs=self.logs,
            events=self.events,
            s3=s3,
        )
        self.api = SageMakerApi(self.machine)

    def close(self) -> None:
        """Close the store (after :meth:`Machine.shutdown`)."""
        self.store.close()

    def load_scenario(self, spec: Any, *, replace: bool = False) -> int:
        """Put a scenario's events in force, times relative to now.

        :param spec: ``{"events": [...]}`` or the list.
        :param replace: drop the events in force first (throttles included).
        :returns: the number of events loaded.
        :raises ScenarioError: a bad event.
        """
        events = parse_events(spec, time.time())
        if replace:
            self.scenario.clear()
            self.throttler.clear()
        self.scenario.add(events)
        if any(isinstance(event, InterruptAt) for event in events):
            self.machine.poll_training = True  # scripted by training seconds: polled from now on
        self.machine.wake_all()
        for event in events:
            if isinstance(event, Throttle):
                if event.rate is not None:
                    self.throttler.set_rate(event.operation, event.rate, time.monotonic())
                else:
                    self.throttler.add_count(event.operation, event.count or 0)
        self.events.record("scenario", events=len(events), replace=replace)
        return len(events)

    def _live_job(self, name: str) -> Job:
        job = self.machine.jobs.get(name)
        if job is None:
            raise AdminError(f"no training job named {name!r}", 404)
        if name not in self.machine.live:
            raise AdminError(f"{name} has ended ({job.state.status.value})", 409)
        return job

    def interrupt(self, name: str) -> dict[str, Any]:
        """Interrupt a spot job's instances now (admin API).

        :param name: the job name.
        :raises AdminError: unknown job (404), on-demand or not holding instances (409).
        """
        job = self._live_job(name)
        if not job.spot:
            raise AdminError(f"{name} is an on-demand job: on-demand jobs are not interrupted", 409)
        secondary = job.state.secondary
        if secondary not in BILLABLE_SECONDARY:
            raise AdminError(f"{name} holds no instances in {secondary.value}", 409)
        self.machine.live[name][1].interrupt_requested = True  # acted on at the next tick
        self.machine.wake(name)
        self.events.record("admin_interrupt", job=name)
        return {"job": name, "interrupt": "requested", "secondary_status": secondary.value}

    def fail(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Inject an internal error: now on a live job, or on the n-th start of matching jobs.

        :param body: ``{"job": name}`` or ``{"job": glob, "start": n}``.
        :raises AdminError: bad body (400), unknown or ended job (404, 409).
        """
        name = body.get("job")
        if not isinstance(name, str) or not name:
            raise AdminError('give {"job": "<name>"} or {"job": "<glob>", "start": n}', 400)
        if "start" in body:
            try:
                self.load_scenario([{"fail_start": {"job": name, "start": body["start"]}}])
            except ScenarioError as err:
                raise AdminError(str(err), 400) from err
            return {"job": name, "fail_start": body["start"]}
        self._live_job(name)
        # Now if it holds instances, else at its next start.
        self.machine.live[name][1].fail_requested = True
        self.machine.wake(name)
        self.events.record("admin_fail", job=name)
        return {"job": name, "internal_error": "requested"}

    def set_capacity(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Force capacity of an instance type on or off (``available`` null: back to models),
        or, with ``after_interruption_of`` (a job glob) and ``available`` false, off from the
        moment a matching job is interrupted.

        :param body: ``{"instance_type": "ml.m5.large", "available": false}``, optionally
            with ``"after_interruption_of": "train-*"``.
        :raises AdminError: bad body (400).
        """
        instance_type = body.get("instance_type")
        available = body.get("available")
        after = body.get("after_interruption_of")
        if not isinstance(instance_type, str) or not instance_type.startswith("ml."):
            raise AdminError("instance_type must be an ml.* instance type", 400)
        if available is not None and not isinstance(available, bool):
            raise AdminError("available must be true, false or null", 400)
        if after is not None:
            if not isinstance(after, str) or not 0 < len(after) <= _GLOB_CHARS:
                raise AdminError(
                    f"after_interruption_of={shown(after)}: must be a job glob of "
                    f"1..{_GLOB_CHARS} characters",
                    400,
                )
            if available is not False:
                raise AdminError(
                    f"available={shown(available)}: must be false with after_interruption_of", 400
                )
            self.market.arm_gap(instance_type, after)
            self.events.record("capacity", instance_type=instance_type, armed=after)
            return {"instance_type": instance_type, "after_interruption_of": after}
        self.market.set_capacity(instance_type, available)
        self.machine.wake_all()
        self.events.record("capacity", instance_type=instance_type, available=available)
        return {"instance_type": instance_type, "available": available}

    def health(self) -> dict[str, Any]:
        """Liveness and a few figures."""
        live = self.machine.live
        return {
            "status": "ok",
            "uptime_seconds": round(time.time() - self.started, 3),
            "jobs": len(self.machine.jobs),
            "live_jobs": len(live),
            "training_jobs": sum(
                1 for job, _ in live.values() if job.state.secondary is SecondaryStatus.TRAINING
            ),
            "s3_endpoint_url": self.s3_endpoint_url,
            "capacity_overrides": self.market.capacity_overrides(),
        }

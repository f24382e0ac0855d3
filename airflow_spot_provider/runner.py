"""The runner: carries out the chain's next action, in the worker, deferred, or poke by poke.

:class:`ChainRunner` looks at the chain (one ListTrainingJobs call, a describe per attempt not
yet ended), writes to the task log what it has not written yet (each transition once, then
"Attempt n ended" once), asks :func:`~airflow_spot_provider.next_action.next_action` what
happens next, and carries it out. The parts that differ by mode, following a job and waiting
out a backoff, are a :class:`Mode`'s two methods (``operators/chain.py``): the worker polls and
sleeps, a deferrable task defers, a sensor's poke returns and looks again at its next poke.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from airflow_spot_provider import position_store
from airflow_spot_provider.attempts import attempts_in, chain_filter
from airflow_spot_provider.economics import (
    checkpoint_advice,
    decision_entry,
    measured_checkpoint_cost,
)
from airflow_spot_provider.events import (
    ChainState,
    ChainSummary,
    FollowFailed,
    JobEnded,
    LaunchResult,
    TriggerEvent,
)
from airflow_spot_provider.exceptions import (
    SpotApiError,
    SpotProviderError,
    SpotRequestValidationError,
    SpotTrainingError,
)
from airflow_spot_provider.follower import follow_job, follow_step, transition_line
from airflow_spot_provider.hooks.job_calls import create_job, describe_job, list_job_names, stop_job
from airflow_spot_provider.hooks.jobs import SyncJobs
from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport, json_safe
from airflow_spot_provider.next_action import (
    Action,
    Done,
    Follow,
    GiveUp,
    Submit,
    Switch,
    next_action,
    switch_due,
)
from airflow_spot_provider.progress import (
    CheckpointObject,
    Finding,
    attempt_findings,
    no_checkpoints,
    ran_on_demand,
)
from airflow_spot_provider.request import validate_training_request
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.summary import format_summary_table, summarize_attempts


class Mode(Protocol):
    """How a task follows a job and waits: the only per-mode code."""

    def follow(self, runner: ChainRunner, job_name: str, *, just_created: bool) -> None:
        """Follow the job until it ends (worker), or hand it over (defer, end the poke)."""

    def wait(self, runner: ChainRunner, seconds: float) -> None:
        """Wait out a backoff (sleep), or hand it over (defer, end the poke)."""


class ChainRunner:
    """One chain of attempts, followed through a :class:`SyncJobs`.

    :param jobs: the jobs interface.
    :param policy: the retry policy.
    :param first_name: the first attempt's job name, which identifies the chain.
    :param base_request: the first attempt's request without ``TrainingJobName``; None for a
        sensor, which rebuilds it from DescribeTrainingJob.
    :param log: the task's logger.
    :param print_log: relay the training job's CloudWatch lines while following.
    :param poll_interval: seconds between two describes.
    :param state: what the task knew of the chain before (carried over a deferral).
    :param on_attempt: called with the latest job's name each time one is created or attached
        to (the console link follows it).
    :param clock: the current time (injectable for tests).
    :param list_checkpoints: lists a checkpoint prefix (``CheckpointConfig.S3Uri``) for the
        progress checks before a resubmission; None: no checks.
    """

    def __init__(
        self,
        *,
        jobs: SyncJobs,
        policy: SpotRetryPolicy,
        first_name: str,
        base_request: Mapping[str, Any] | None,
        log: Any,
        print_log: bool = False,
        poll_interval: float = 30.0,
        state: ChainState | None = None,
        on_attempt: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        list_checkpoints: Callable[[str], list[CheckpointObject]] | None = None,
    ) -> None:
        self.jobs = jobs
        self.policy = policy
        self.first_name = first_name
        self.base_request = base_request
        self.log = log
        self.print_log = print_log
        self.poll_interval = poll_interval
        self.state = state or ChainState()
        self.on_attempt = on_attempt
        self.clock = clock
        self.list_checkpoints = list_checkpoints
        # The descriptions of the attempts before the running one (the policy's history).
        self.history: list[dict[str, Any]] = []

    def chain(self) -> list[str]:
        """The chain's job names, oldest first."""
        names = self.jobs.run(list_job_names(chain_filter(self.first_name)))
        if self.first_name not in names and self.base_request is None:
            # A follower of a job made elsewhere: ListTrainingJobs may lag behind a job just
            # created, so ask for the job itself before calling it missing.
            self.describe(self.first_name)
            names = [*names, self.first_name]
        return attempts_in(names, self.first_name)

    def describe(self, job_name: str) -> dict[str, Any]:
        """DescribeTrainingJob, once only for an ended job (its description never changes).

        :param job_name: the job.
        """
        if job_name in self.state.ended:
            return self.state.ended[job_name]
        describe = self.jobs.run(describe_job(job_name))
        if SpotJobReport.from_describe(describe).is_terminal:
            self.state.ended[job_name] = describe
        return describe

    def look(self) -> Action:
        """Write what is new of each attempt to the task log, then decide what happens next."""
        chain = self.chain()
        describes = [self.describe(name) for name in chain]
        for attempt, describe in enumerate(describes, start=1):
            self._write(attempt, SpotJobReport.from_describe(describe))
        self.history = describes[:-1]
        pending = self.state.pending
        if pending is not None and pending.attempt == len(chain) + 1:
            return pending  # decided (and logged) when the last attempt ended
        try:
            action = next_action(
                first_name=self.first_name,
                describes=describes,
                policy=self.policy,
                base_request=self.base_request,
                now=self.clock(),
                switched=self.state.switched,
                findings=self._findings(describes),
            )
        except ValueError as missing:
            raise SpotApiError("ValidationException", str(missing), self.first_name) from missing
        self.state.pending = action if isinstance(action, Submit) else None
        return action

    def _findings(self, describes: Sequence[Mapping[str, Any]]) -> list[Finding]:
        """The progress findings before a resubmission (lists the checkpoint prefix); logged.

        Only when the last attempt ended without its model: the next action may resubmit.
        """
        if not describes or self.list_checkpoints is None:
            return []
        reports = [SpotJobReport.from_describe(d) for d in describes]
        last = reports[-1]
        uri = (describes[-1].get("CheckpointConfig") or {}).get("S3Uri")
        if not last.is_terminal or last.outcome is JobOutcome.COMPLETED or not uri:
            return []
        try:
            objects = self.list_checkpoints(str(uri))
        except Exception as error:  # a check must not fail the chain
            # No s3:ListBucket, a bucket in another account: the resubmission goes on unchecked.
            self.log.warning("Progress checks skipped: listing %s failed: %s", uri, error)
            return []
        self._measure(last, objects)
        found = attempt_findings(
            objects, reports, self._requested_spot(reports), self.policy.checkpoint_interval_seconds
        )
        empty = no_checkpoints(objects, str(uri), len(reports) + 1)
        if empty is not None:
            found.insert(0, empty)
        self._note(found)
        return found

    def _measure(self, report: SpotJobReport, objects: Sequence[CheckpointObject]) -> None:
        """Keep (and log once) the checkpoint cost the ended attempt shows, if it shows one.

        :param report: the ended attempt.
        :param objects: its checkpoint prefix's objects, listed now.
        """
        if report.job_name in self.state.checkpoint_costs:
            return
        cost = measured_checkpoint_cost(report, objects)
        if cost is not None:
            self.state.checkpoint_costs[report.job_name] = round(cost, 3)
            self.log.info(
                "Checkpoint cost measured on %s: %.1f s from SIGTERM to its last checkpoint sync.",
                report.job_name,
                cost,
            )

    def _requested_spot(self, reports: Sequence[SpotJobReport]) -> list[bool]:
        """Whether each attempt was asked to run on spot: as the user's request asked."""
        if self.base_request is not None:
            return [bool(self.base_request.get("EnableManagedSpotTraining"))] * len(reports)
        return [reports[0].managed_spot] * len(reports)  # a sensor: as attempt 1 ran

    def _note(self, findings: Sequence[Finding]) -> None:
        """Log findings not seen before and keep them for the summary."""
        for finding in findings:
            entry = finding.to_json()
            if entry not in self.state.findings:
                self.log.warning("Progress check: %s", finding.message)
                self.state.findings.append(entry)

    def _write(self, attempt: int, report: SpotJobReport) -> None:
        """Log a job's transitions not logged yet and, once, its end."""
        position = self.state.position(report.job_name)
        if position.ended:
            return
        step = follow_step(report, position)
        for transition in step.transitions:
            self.log.info(transition_line(report.job_name, transition))
        position = step.position
        if report.is_terminal:
            self.log.info("Attempt %d ended: %s", attempt, report.summary_line())
            position = replace(position, ended=True)
        self.state.positions[report.job_name] = position

    def run(self, mode: Mode) -> dict[str, Any]:
        """Carry out actions until the chain completes; its summary (plain JSON).

        :param mode: how this task follows and waits.
        :raises SpotTrainingError: when the policy gives up.
        :raises SpotApiError: when the API kept failing.
        """
        try:
            while True:
                action = self.look()
                if isinstance(action, Done):
                    return self._done(action)
                if isinstance(action, GiveUp):
                    self._give_up(action)
                if isinstance(action, Switch):
                    self.switch(action)
                    mode.follow(self, action.job_name, just_created=False)
                elif isinstance(action, Follow):
                    if self._announce(action.job_name):
                        self.log.info("Attaching to running training job %s.", action.job_name)
                    mode.follow(self, action.job_name, just_created=False)
                elif (wait := action.seconds_left(self.clock())) > 0:
                    self.log.info("Waiting %.1f s before creating %s.", wait, action.job_name)
                    mode.wait(self, wait)
                else:
                    self.submit(action)
                    mode.follow(self, action.job_name, just_created=True)
        except SpotProviderError:
            self.forget()
            raise

    def _give_up(self, action: GiveUp) -> NoReturn:
        """Log the chain's table and why no attempt follows; raise."""
        if action.decision is not None:
            self.state.decisions.append(dict(action.decision))
        if action.reports:
            self.log.error(format_summary_table(summarize_attempts(action.reports)))
        self.log.error("No further attempt: %s", action.reason)
        last_name = action.reports[-1].job_name if action.reports else self.first_name
        raise SpotTrainingError(last_name, action.outcome, action.reason, action.reports)

    def switch(self, action: Switch) -> None:
        """Stop a waiting spot attempt so that an on-demand one resumes from its checkpoint.

        :param action: the switch.
        """
        self.log.warning("Deadline: %s", action.decision.reason)
        self.state.decisions.append(decision_entry(action.decision))
        self.state.switched.append(action.job_name)  # its STOPPED end is not a user's stop
        self.jobs.run(stop_job(action.job_name))
        self.log.info("Stopped training job %s to switch to on-demand.", action.job_name)

    def _done(self, action: Done) -> dict[str, Any]:
        self.forget()
        requested = self._requested_spot(action.reports)
        self._note(
            [
                f
                for n, (r, spot) in enumerate(zip(action.reports, requested, strict=True), 1)
                if (f := ran_on_demand(r, n, spot)) is not None
            ]
        )
        result = ChainSummary.of(self.first_name, action.reports).to_json()
        result["advice"] = checkpoint_advice(
            action.reports,
            measured=self.state.checkpoint_costs,
            given_cost_seconds=self.policy.checkpoint_cost_seconds,
            checkpoint_interval_seconds=self.policy.checkpoint_interval_seconds,
            restart_overhead_seconds=self.policy.restart_overhead_seconds,
        )
        result["decisions"] = list(self.state.decisions)
        result["findings"] = list(self.state.findings)
        self.log.info("Spot training summary:\n%s", format_summary_table(result))
        return result

    def _announce(self, job_name: str) -> bool:
        """Tell ``on_attempt`` about the chain's latest job once; True if it is new to the task."""
        if self.state.latest == job_name:
            return False
        self.state.latest = job_name
        if self.on_attempt is not None:
            self.on_attempt(job_name)
        return True

    def submit(self, action: Submit) -> None:
        """Create an attempt (or find it, created by an earlier try).

        :param action: the submission.
        """
        # Resubmissions may switch to on-demand: check with the generic rules, before the call.
        violations = validate_training_request(action.request)
        if violations:
            raise SpotRequestValidationError(violations)
        created = self.jobs.run(create_job(action.request))
        self.state.pending = None
        if action.decision is not None:
            self.state.decisions.append(dict(action.decision))
        self.log.info(
            "%s training job %s (attempt %d, %s).",
            "Created" if created else "Found existing",
            action.job_name,
            action.attempt,
            "spot" if action.request.get("EnableManagedSpotTraining") else "on-demand",
        )
        self._announce(action.job_name)

    def launch(self) -> dict[str, Any]:
        """Create the first job if the chain has none (never resubmit); a launch's result."""
        chain = self.chain()
        if not chain:
            action = self.look()
            if isinstance(action, GiveUp):
                self._give_up(action)
            if isinstance(action, Submit):
                self.submit(action)
            chain = [self.first_name]
        report = SpotJobReport.from_describe(self.describe(chain[-1]))
        return LaunchResult(
            first_job_name=self.first_name,
            latest_job_name=chain[-1],
            job_arn=report.job_arn,
            outcome=report.outcome.value if report.outcome else None,
        ).to_json()

    def follow_here(self, job_name: str, *, just_created: bool) -> None:
        """Poll a job in this process until it ends (worker mode).

        :param job_name: the job.
        :param just_created: wait one poll interval before the first describe.
        """
        describe, position = self.jobs.run(
            follow_job(
                self.state.position(job_name),
                poll_interval=self.poll_interval,
                print_log=self.print_log,
                wait_first=just_created,
                stop_when=self.stop_when(job_name),
            )
        )
        self.state.positions[job_name] = position
        if SpotJobReport.from_describe(describe).is_terminal:
            self.state.ended[job_name] = describe

    def stop_when(self, job_name: str) -> Callable[[dict[str, Any]], bool] | None:
        """The follower's early exit for a job: when the policy would switch it (or None).

        :param job_name: the job followed (the chain's last).
        """
        if not self.policy.deadline_aware or job_name in self.state.switched:
            return None
        history, policy, base = list(self.history), self.policy, self.base_request
        return lambda describe: switch_due(
            first_name=self.first_name,
            history=history,
            describe=describe,
            policy=policy,
            base_request=base,
            now=self.clock(),
        )

    def switch_kwargs(self, job_name: str) -> dict[str, Any] | None:
        """What a trigger needs to evaluate :func:`switch_due` itself (plain JSON), or None.

        :param job_name: the job followed.
        """
        if self.stop_when(job_name) is None:
            return None
        return {
            "first_name": self.first_name,
            "policy": self.policy.to_json(),
            "base_request": json_safe(self.base_request),
            "history": json_safe(self.history),
        }

    def take_event(self, event: TriggerEvent) -> None:
        """Take a trigger's event: an error ends the task; an end brings the final description.

        The transitions the trigger showed are not taken as written: the trigger's log file may
        be overwritten, so the worker writes them to the task log itself (:meth:`look`).

        :param event: the event.
        """
        if isinstance(event, FollowFailed):
            self.forget()
            raise SpotApiError(event.code, event.message, event.job_name)
        if isinstance(event, JobEnded) and event.report.is_terminal:
            # Not terminal: the trigger handed back a job the policy may switch (look decides).
            self.state.ended[event.job_name] = dict(event.describe)

    def stop_running(self) -> None:
        """Stop every job of the chain still in progress (the task is being killed)."""
        for job_name in self.chain():
            if self.jobs.run(stop_job(job_name)):
                self.log.info("Stopped training job %s: the task was killed.", job_name)

    def forget(self) -> None:
        """Delete the chain's saved positions (it has ended): none is left behind."""
        position_store.delete(position_store.CHAIN_PREFIX + self.first_name)
        for job_name in sorted(set(self.state.positions) | set(self.state.ended)):
            position_store.delete_position(job_name)

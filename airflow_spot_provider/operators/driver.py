"""The chain of attempts, driven from SageMaker's state: shared by the operator and the sensor.

Everything is rebuilt from SageMaker on each step (one ListTrainingJobs call, a describe per
attempt), so that a retried task, a resumed deferral or a rescheduled sensor carries on exactly
where the chain is, without duplicates. Decisions come from :class:`SpotRetryPolicy`; this
module does the I/O around them and the logging.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from airflow_spot_provider.attempts import (
    FollowState,
    attempt_name,
    attempts_in,
    chain_base,
    request_from_describe,
    transition_line,
)
from airflow_spot_provider.exceptions import (
    SpotApiError,
    SpotRequestValidationError,
    SpotTrainingError,
)
from airflow_spot_provider.hooks.errors import ApiErrorBudget, classify_api_error
from airflow_spot_provider.hooks.spot_training import SageMakerSpotHook
from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport, json_safe
from airflow_spot_provider.request import validate_training_request
from airflow_spot_provider.retry import GiveUp, SpotRetryPolicy
from airflow_spot_provider.summary import format_summary_table, summarize_attempts
from airflow_spot_provider.triggers.spot_training import EVENT_ERROR

T = TypeVar("T")
# Lasting API errors in a row before the task fails; transient ones are retried for as long
# as they last (the job's own MaxWait bounds the wait, not a call budget).
MAX_LASTING_API_ERRORS = 3
API_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Step:
    """What the caller does next.

    :param job_name: the job concerned (to follow, or the last one).
    :param attempt: its attempt number (for a wait: the attempt about to be created).
    :param summary: set when the chain completed: the task's return value.
    :param wait_seconds: > 0: wait this long (backoff), then call ``advance()`` again.
    :param created: the job was created by this step (its first status is known: Starting).
    """

    job_name: str
    attempt: int
    summary: dict[str, Any] | None = None
    wait_seconds: float = 0.0
    created: bool = False


def _policy_view(base: Mapping[str, Any], describe: Mapping[str, Any]) -> dict[str, Any]:
    """The last attempt's request: the user's request with the fields a policy may have changed.

    :param base: the validated request of the first attempt.
    :param describe: DescribeTrainingJob of the last attempt.
    """
    request = copy.deepcopy(dict(base))
    request["EnableManagedSpotTraining"] = bool(describe.get("EnableManagedSpotTraining"))
    request["ResourceConfig"]["InstanceType"] = describe["ResourceConfig"]["InstanceType"]
    request["StoppingCondition"] = copy.deepcopy(describe.get("StoppingCondition", {}))
    if "CheckpointConfig" in describe:
        # Resume from where the chain checkpoints, even if a template renders differently now.
        request["CheckpointConfig"] = copy.deepcopy(describe["CheckpointConfig"])
    return request


class SpotTrainingDriver:
    """One chain of attempts, through a :class:`SageMakerSpotHook`.

    :param hook: the SageMaker hook.
    :param policy: the retry policy.
    :param first_name: the first attempt's job name, which identifies the chain.
    :param base_request: the first attempt's request without ``TrainingJobName``; None for a
        sensor, which rebuilds it from DescribeTrainingJob.
    :param log: where lifecycle lines go (the task's logger: ``info``, ``error``).
    :param print_log: also log the training job's CloudWatch lines while following.
    :param clock: the current time (injectable for tests).
    """

    def __init__(
        self,
        *,
        hook: SageMakerSpotHook,
        policy: SpotRetryPolicy,
        first_name: str,
        base_request: Mapping[str, Any] | None,
        log: Any,
        print_log: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.hook = hook
        self.policy = policy
        self.first_name = first_name
        self.base_request = base_request
        self.log = log
        self.print_log = print_log
        self.clock = clock
        self._follow: dict[str, FollowState] = {}
        # Where a follower running in a new process each time finds what it already logged.
        self.position_loader: Callable[[str], FollowState | None] | None = None
        # A finished job's description never changes: describe it once.
        self._ended: dict[str, dict[str, Any]] = {}

    def follow_state(self, job_name: str) -> FollowState:
        """What has been logged of a job so far.

        :param job_name: the job.
        """
        if job_name not in self._follow:
            saved = self.position_loader(job_name) if self.position_loader else None
            self._follow[job_name] = saved or FollowState(job_name)
        return self._follow[job_name]

    def _call(self, job_name: str, fn: Callable[..., T], *args: Any, lasting_ok: bool = True) -> T:
        """Call the hook, waiting out throttling, 5xx and connection errors.

        :param job_name: the job concerned (for the error).
        :param fn: the hook method.
        :param args: its arguments.
        :param lasting_ok: retry a non-transient error a few times before giving up (False: at
            once, for calls whose lasting errors will not change, such as a create).
        """
        budget = ApiErrorBudget(max_errors=MAX_LASTING_API_ERRORS if lasting_ok else 1)
        while True:
            try:
                return fn(*args)
            except (ClientError, BotoCoreError) as raw:
                error = classify_api_error(raw)
                if budget.exhausted(error):
                    raise SpotApiError(error.code, error.message, job_name) from raw
                delay = budget.backoff_seconds(API_RETRY_SECONDS)
                self.log.warning("SageMaker call failed (%s); retrying in %.0f s.", error, delay)
                time.sleep(delay)

    def _chain(self) -> list[str]:
        names = self._call(self.first_name, self.hook.list_job_names, chain_base(self.first_name))
        if self.first_name not in names and self.base_request is None:
            # A follower of a job made elsewhere: ListTrainingJobs may lag behind a job just
            # created, so ask for the job itself before calling it missing.
            self._describe(self.first_name)
            names = [*names, self.first_name]
        return attempts_in(names, self.first_name)

    def advance(self, *, launch_only: bool = False) -> Step:
        """Look at the chain and return the next step, creating a job where one is due.

        :param launch_only: only create the first job if the chain has none (a launch task);
            never resubmit.
        """
        chain = self._chain()
        if not chain:
            if self.base_request is None:
                raise SpotApiError("ValidationException", "no such training job", self.first_name)
            self._create({**self.base_request, "TrainingJobName": self.first_name}, 1)
            return Step(self.first_name, 1, created=True)
        if launch_only:
            return Step(chain[-1], len(chain))
        describes = [self._describe(name) for name in chain]
        reports = [SpotJobReport.from_describe(d) for d in describes]
        last = reports[-1]
        self._log_transitions(last)
        if not last.is_terminal:
            self.log.info("Attaching to running training job %s.", last.job_name)
            return Step(last.job_name, len(chain))
        self.log.info("Attempt %d ended: %s", len(chain), last.summary_line())
        if last.outcome is JobOutcome.COMPLETED:
            self.forget_positions(chain)
            return Step(last.job_name, len(chain), summary=self.summary(reports))
        last_request = self._last_request(describes[-1])
        decision = self.policy.decide(reports, now=self.clock(), last_request=last_request)
        if isinstance(decision, GiveUp):
            self.forget_positions(chain)
            self.log.error(format_summary_table(summarize_attempts(reports)))
            raise SpotTrainingError(last.job_name, last.outcome, decision.reason, reports)
        # The backoff counts from the end of the last attempt: a resumed or rescheduled
        # follower waits only what is left of it, without remembering anything.
        ended = last.end_time or last.creation_time or self.clock()
        remaining = decision.delay_seconds - (self.clock() - ended).total_seconds()
        if remaining > 0:
            return Step(last.job_name, decision.attempt, wait_seconds=remaining)
        name = attempt_name(self.first_name, decision.attempt)
        request = decision.changes.apply(last_request)
        request["TrainingJobName"] = name
        self._create(request, decision.attempt)
        return Step(name, decision.attempt, created=True)

    def _describe(self, job_name: str) -> dict[str, Any]:
        if job_name in self._ended:
            return self._ended[job_name]
        describe = self._call(job_name, self.hook.describe_job, job_name)
        if SpotJobReport.from_describe(describe).is_terminal:
            self._ended[job_name] = describe
        return describe

    def _last_request(self, describe: Mapping[str, Any]) -> dict[str, Any]:
        if self.base_request is not None:
            return _policy_view(self.base_request, describe)
        request = request_from_describe(describe)
        request.pop("TrainingJobName", None)
        return request

    def _create(self, request: dict[str, Any], attempt: int) -> None:
        # Resubmissions may switch to on-demand: check with the generic rules, before the call.
        violations = validate_training_request(request)
        if violations:
            raise SpotRequestValidationError(violations)
        name = str(request["TrainingJobName"])
        created = self._call(name, self.hook.create_job, request, lasting_ok=False)
        verb = "Created" if created else "Found existing"
        self.log.info(
            "%s training job %s (attempt %d, %s).",
            verb,
            request["TrainingJobName"],
            attempt,
            "spot" if request.get("EnableManagedSpotTraining") else "on-demand",
        )

    def _log_transitions(self, report: SpotJobReport) -> None:
        state = self.follow_state(report.job_name)
        for transition in state.take_new(report):
            self.log.info(transition_line(report.job_name, transition))
        if self.print_log:
            self._print_log_lines(state)

    def _print_log_lines(self, state: FollowState) -> None:
        # Read with a copy of the positions: a failure half-way must not skip what was read.
        tokens = dict(state.log_tokens)
        try:
            lines = list(self.hook.new_log_lines(state.job_name, tokens))
        except (ClientError, BotoCoreError) as raw:
            # The training log is a nicety: the job's status is what the task follows.
            self.log.warning("Could not read the training log: %s", classify_api_error(raw))
            return
        state.log_tokens = tokens
        for stream, line in lines:
            self.log.info("[%s] %s", stream.rsplit("/", 1)[-1], line)

    def follow(
        self, job_name: str, poll_interval: float, wait_first: bool = False
    ) -> SpotJobReport:
        """Poll a job in this process until it ends (worker mode).

        :param job_name: the job.
        :param poll_interval: seconds between two describes.
        :param wait_first: wait one interval before the first describe (a job just created).
        """
        if wait_first:
            time.sleep(poll_interval)
        while True:
            report = SpotJobReport.from_describe(self._describe(job_name))
            self._log_transitions(report)
            if report.is_terminal:
                return report
            time.sleep(poll_interval)

    def ended_descriptions(self) -> dict[str, Any]:
        """The descriptions of the chain's ended jobs, as plain JSON (they never change)."""
        return {name: json_safe(describe) for name, describe in self._ended.items()}

    def remember_ended(self, ended: Mapping[str, Any]) -> None:
        """Take descriptions made by :meth:`ended_descriptions` in an earlier process.

        :param ended: job name -> description.
        """
        for name, describe in ended.items():
            if SpotJobReport.from_describe(describe).is_terminal:
                self._ended[name] = dict(describe)

    def take_event(self, event: Mapping[str, Any]) -> None:
        """Take a trigger's event: an error ends the task; "done" carries the logged position.

        :param event: the event payload.
        """
        if event.get("status") == EVENT_ERROR:
            raise SpotApiError(
                str(event.get("code")), str(event.get("message")), event.get("job_name")
            )
        follow = event.get("follow")
        if follow:
            state = FollowState.from_json(follow)
            self._follow[state.job_name] = state
        describe = event.get("describe")
        if describe:
            self.remember_ended({str(describe["TrainingJobName"]): describe})

    def forget_positions(self, chain: list[str]) -> None:
        """Delete the saved log positions of the chain's jobs (it has ended).

        :param chain: the chain's job names.
        """
        from airflow_spot_provider.position import delete_position

        for job_name in chain:
            delete_position(job_name)

    def stop_running(self) -> None:
        """Stop every job of the chain that is still in progress (the task is being killed)."""
        for job_name in self._chain():
            stopped = self._call(job_name, self.hook.stop_job, job_name)
            if stopped:
                self.log.info("Stopped training job %s: the task was killed.", job_name)

    def sleep(self, seconds: float) -> None:
        """Wait in the worker before a resubmission.

        :param seconds: how long.
        """
        self.log.info("Waiting %.1f s before resubmitting.", seconds)
        time.sleep(seconds)

    def summary(self, reports: list[SpotJobReport]) -> dict[str, Any]:
        """The task's return value (plain JSON), logged as a table.

        :param reports: every attempt's report, oldest first.
        """
        last = reports[-1]
        result = {
            "job_name": last.job_name,
            "job_arn": last.job_arn,
            "outcome": last.outcome.value if last.outcome else None,
            "model_artifact_uri": last.model_artifact_uri,
            "checkpoint_s3_uri": last.checkpoint_s3_uri,
            **summarize_attempts(reports),
        }
        self.log.info("Spot training summary:\n%s", format_summary_table(result))
        return result

    def created_summary(self, job_name: str) -> dict[str, Any]:
        """Return value when not waiting for completion.

        :param job_name: the job just created or found (the chain's latest).
        """
        report = SpotJobReport.from_describe(self._describe(job_name))
        return {
            "job_name": self.first_name,
            "latest_job_name": job_name,
            "job_arn": report.job_arn,
            "outcome": report.outcome.value if report.outcome else None,
        }

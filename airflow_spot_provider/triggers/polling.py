"""How a trigger asks SageMaker about a job: one small interface, one implementation per call shape.

:class:`JobPoller` is all the trigger needs. :class:`DescribePoller` makes one
DescribeTrainingJob call per job and poll; a poller that answers many jobs from one
ListTrainingJobs call can take its place without touching the trigger.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any, Protocol, Self

from asgiref.sync import sync_to_async

from airflow_spot_provider.attempts import FollowState
from airflow_spot_provider.hooks.errors import classify_api_error
from airflow_spot_provider.hooks.spot_training import (
    LOG_GROUP,
    advance_token,
    event_line,
    log_page_args,
)
from airflow_spot_provider.lifecycle import TrainingJobStatus
from airflow_spot_provider.position import furthest, load_position, save_position

log = logging.getLogger(__name__)
# StopTrainingJob tries on a kill; the triggerer gives on_kill a bounded time.
_STOP_TRIES = 3


class JobPoller(Protocol):
    """What the trigger needs from SageMaker (and from Airflow, to keep its log position)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def describe(self, job_name: str) -> dict[str, Any]:
        """DescribeTrainingJob; raises :class:`ApiCallError`."""

    async def stop(self, job_name: str) -> bool:
        """Stop the job if it runs; True if a stop was requested."""

    async def log_lines(self, job_name: str, tokens: dict[str, str]) -> list[tuple[str, str]]:
        """CloudWatch lines written since ``tokens`` (updated in place); raises ApiCallError."""

    async def resume_position(self, state: FollowState) -> FollowState:
        """The furthest position saved for this job (after a triggerer restart)."""

    async def save_position(self, state: FollowState) -> None:
        """Remember what was logged, so that a re-created trigger does not log it again."""


class DescribePoller:
    """One DescribeTrainingJob call per poll through the Amazon provider's async connection.

    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    """

    def __init__(self, *, aws_conn_id: str | None, region_name: str | None) -> None:
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self._client_cm: Any = None
        self._client: Any = None
        self._logs_cm: Any = None
        self._logs: Any = None

    async def __aenter__(self) -> Self:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        hook = SageMakerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)  # type: ignore[no-untyped-call]
        self._client_cm = await hook.get_async_conn()  # type: ignore[no-untyped-call]
        self._client = await self._client_cm.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._logs_cm is not None:
            await self._logs_cm.__aexit__(exc_type, exc, tb)
        if self._client_cm is not None:
            await self._client_cm.__aexit__(exc_type, exc, tb)
        self._client_cm = self._client = self._logs_cm = self._logs = None

    async def describe(self, job_name: str) -> dict[str, Any]:
        """DescribeTrainingJob.

        :param job_name: the training job.
        """
        try:
            response: dict[str, Any] = await self._client.describe_training_job(
                TrainingJobName=job_name
            )
        except Exception as error:
            raise classify_api_error(error) from error
        return response

    async def stop(self, job_name: str) -> bool:
        """Stop the job if it is still in progress; transient errors are retried a few times.

        :param job_name: the training job.
        """
        for attempt in range(_STOP_TRIES):
            status = TrainingJobStatus((await self.describe(job_name))["TrainingJobStatus"])
            if status is not TrainingJobStatus.IN_PROGRESS:
                return False  # ended on its own, possibly between two calls
            try:
                await self._client.stop_training_job(TrainingJobName=job_name)
            except Exception as raw:
                error = classify_api_error(raw)
                if not error.transient or attempt + 1 == _STOP_TRIES:
                    raise error from raw
                await asyncio.sleep(2**attempt)
            else:
                return True
        return False

    async def log_lines(self, job_name: str, tokens: dict[str, str]) -> list[tuple[str, str]]:
        """The job's CloudWatch lines written since the positions in ``tokens``.

        :param job_name: the training job (streams ``<job>/algo-N-<epoch>``).
        :param tokens: stream -> next forward token; updated in place.
        """
        try:
            logs = await self._logs_client()
            found = await logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/"
            )
            lines: list[tuple[str, str]] = []
            for stream in sorted(s["logStreamName"] for s in found.get("logStreams", [])):
                lines.extend(await self._stream_lines(logs, stream, tokens))
        except Exception as error:
            raise classify_api_error(error) from error
        return lines

    async def _logs_client(self) -> Any:
        if self._logs is None:
            from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

            hook = AwsLogsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
            self._logs_cm = await hook.get_async_conn()  # type: ignore[no-untyped-call]
            self._logs = await self._logs_cm.__aenter__()
        return self._logs

    @staticmethod
    async def _stream_lines(
        logs: Any, stream: str, tokens: dict[str, str]
    ) -> list[tuple[str, str]]:
        lines: list[tuple[str, str]] = []
        while True:
            page = await logs.get_log_events(**log_page_args(stream, tokens))
            events = page.get("events", [])
            lines.extend((stream, event_line(e)) for e in events)
            if not advance_token(tokens, stream, page.get("nextForwardToken"), bool(events)):
                return lines

    async def resume_position(self, state: FollowState) -> FollowState:
        """Merge the position saved in an Airflow Variable by an earlier trigger of this job.

        :param state: the position the trigger was created with.
        """
        saved = await sync_to_async(load_position)(state.job_name)
        return furthest(state, saved)

    async def save_position(self, state: FollowState) -> None:
        """Save the position in an Airflow Variable.

        :param state: the position.
        """
        await sync_to_async(save_position)(state)

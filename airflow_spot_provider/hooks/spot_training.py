"""AWS calls for spot training jobs: create, find, describe, stop, list attempts, read logs.

Built on the Amazon provider's ``AwsBaseHook``: the same ``aws_conn_id``, region and
``service_config`` endpoint routing, so the embedded backend is reached by connection alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook
from botocore.exceptions import ClientError

from airflow_spot_provider.lifecycle import TrainingJobStatus

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# Error codes SageMaker uses for a name already taken (the API model and the service disagree).
_NAME_TAKEN = frozenset({"ResourceInUse", "ResourceInUseException"})


def error_code(error: ClientError) -> str:
    """The AWS error code of a botocore ``ClientError``.

    :param error: the error.
    """
    return str(error.response.get("Error", {}).get("Code", ""))


class SageMakerSpotHook(AwsBaseHook):
    """Synchronous SageMaker client for spot training jobs.

    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    """

    conn_name_attr = "aws_conn_id"
    hook_name = "Amazon SageMaker Managed Spot Training"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "sagemaker"
        super().__init__(*args, **kwargs)

    @property
    def _client(self) -> Any:
        return self.conn

    @cached_property
    def _logs_client(self) -> Any:
        # The same connection routes CloudWatch Logs (``service_config.logs``).
        return AwsLogsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).conn

    def create_job(self, request: Mapping[str, Any]) -> bool:
        """Create a training job unless one of that name exists already.

        :param request: a validated CreateTrainingJob request with ``TrainingJobName``.
        :return: True when this call created the job, False when it already existed
            (an Airflow retry or a re-run re-attaches instead of duplicating).
        """
        try:
            self._client.create_training_job(**request)
        except ClientError as error:
            if error_code(error) in _NAME_TAKEN:
                log.info("Training job %s exists already: attaching.", request["TrainingJobName"])
                return False
            raise
        return True

    def describe_job(self, job_name: str) -> dict[str, Any]:
        """DescribeTrainingJob.

        :param job_name: the training job name.
        """
        response: dict[str, Any] = self._client.describe_training_job(TrainingJobName=job_name)
        return response

    def list_job_names(self, name_contains: str) -> list[str]:
        """Names of every training job whose name contains a string (all pages).

        :param name_contains: the ``NameContains`` filter.
        """
        names: list[str] = []
        kwargs: dict[str, Any] = {"NameContains": name_contains, "MaxResults": 100}
        while True:
            page = self._client.list_training_jobs(**kwargs)
            names.extend(s["TrainingJobName"] for s in page.get("TrainingJobSummaries", []))
            token = page.get("NextToken")
            if not token:
                return names
            kwargs["NextToken"] = token

    def stop_job(self, job_name: str) -> bool:
        """Stop a job if it still runs.

        :param job_name: the training job name.
        :return: True if a stop was requested, False if the job had already ended.
        """
        status = TrainingJobStatus(self.describe_job(job_name)["TrainingJobStatus"])
        if status is not TrainingJobStatus.IN_PROGRESS:
            return False
        try:
            self._client.stop_training_job(TrainingJobName=job_name)
        except ClientError:
            # It may have ended between the two calls: decide on its status, not the message.
            ended = TrainingJobStatus(self.describe_job(job_name)["TrainingJobStatus"])
            if ended is TrainingJobStatus.IN_PROGRESS:
                raise
            return False
        log.info("Requested stop of training job %s.", job_name)
        return True

    def new_log_lines(self, job_name: str, tokens: dict[str, str]) -> Iterator[tuple[str, str]]:
        """Log lines of a job's CloudWatch streams written since the given positions.

        :param job_name: the training job name (streams are ``<job>/algo-N-<epoch>``).
        :param tokens: stream name -> next forward token; updated in place as lines are read.
        :return: (stream, message) pairs, stream by stream.
        """
        logs = self._logs_client
        try:
            streams = logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/"
            ).get("logStreams", [])
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return  # no log group yet: the job has not written anything
            raise
        for stream in sorted(s["logStreamName"] for s in streams):
            yield from self._stream_lines(logs, stream, tokens)

    @staticmethod
    def _stream_lines(logs: Any, stream: str, tokens: dict[str, str]) -> Iterator[tuple[str, str]]:
        while True:
            page = logs.get_log_events(**log_page_args(stream, tokens))
            events = page.get("events", [])
            for event in events:
                yield stream, event_line(event)
            if not advance_token(tokens, stream, page.get("nextForwardToken"), bool(events)):
                return


def log_page_args(stream: str, tokens: Mapping[str, str]) -> dict[str, Any]:
    """GetLogEvents arguments for the next page of a stream.

    :param stream: the log stream.
    :param tokens: stream -> next forward token (none yet: from the stream's head).
    """
    args: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream}
    if stream in tokens:
        args["nextToken"] = tokens[stream]
    else:
        args["startFromHead"] = True
    return args


def event_line(event: Mapping[str, Any]) -> str:
    """The text of one CloudWatch log event.

    :param event: an item of GetLogEvents' ``events``.
    """
    return str(event.get("message", "")).rstrip("\n")


def advance_token(tokens: dict[str, str], stream: str, token: str | None, had_events: bool) -> bool:
    """Record a stream's next forward token; True while more pages may follow.

    CloudWatch returns the same token again at the end of a stream.

    :param tokens: stream -> next forward token, updated in place.
    :param stream: the log stream.
    :param token: ``nextForwardToken`` of the page just read.
    :param had_events: whether that page held events.
    """
    previous = tokens.get(stream)
    if token is not None:
        tokens[stream] = token
    return token is not None and token != previous and had_events

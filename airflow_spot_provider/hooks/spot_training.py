"""The provider's hook: the Amazon provider's ``AwsBaseHook`` for SageMaker, and its jobs interface.

The same ``aws_conn_id``, region and ``service_config`` endpoint routing as any Amazon hook, so
the embedded backend is reached by connection alone. The calls themselves are
:mod:`~airflow_spot_provider.hooks.job_calls`, carried out by :class:`SyncJobs`.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from airflow_spot_provider.exceptions import no_region_error
from airflow_spot_provider.hooks.errors import ApiRetryRule
from airflow_spot_provider.hooks.jobs import SyncJobs


class SageMakerSpotHook(AwsBaseHook):
    """SageMaker for spot training jobs: the connection of the operator and the sensor.

    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region; the connection's if None.
    """

    conn_name_attr = "aws_conn_id"
    hook_name = "Amazon SageMaker Managed Spot Training"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "sagemaker"
        super().__init__(*args, **kwargs)

    def jobs(self, log: Any, poll_interval: float) -> SyncJobs:
        """The jobs interface over this hook's connection (which must give a region).

        :param log: where its lines go (the task's logger).
        :param poll_interval: the task's poll interval (the first wait after an API error is at
            most this).
        :raises SpotConfigurationError: when the connection gives no region.
        """
        self.check_region()
        rule = ApiRetryRule(initial_seconds=min(1.0, poll_interval))
        return SyncJobs(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, log=log, rule=rule
        )

    def check_region(self) -> str:
        """The region the clients will use, as the connection resolves it (the hook's, the
        connection's extra, its profile or session kwargs, or botocore's default).

        Checked before the follower's first call: without it botocore fails the first client with
        a bare ``NoRegionError`` traceback.

        :raises SpotConfigurationError: when there is none.
        """
        from botocore.exceptions import NoRegionError

        try:
            return str(self.conn_region_name)  # the hook's client, cached (the console link's)
        except NoRegionError:
            raise no_region_error(self.aws_conn_id) from None  # the message says it all

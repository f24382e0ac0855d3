"""Operator extra links: the job in the SageMaker console; the chain in the Spot training view."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink
from airflow.sdk import BaseOperatorLink


class SageMakerSpotTrainingJobLink(BaseAwsLink):
    """Link to the training job's page in the SageMaker console."""

    name = "SageMaker Training Job"
    key = "sagemaker_spot_training_job"
    format_str = BASE_AWS_CONSOLE_LINK + "/sagemaker/home?region={region_name}#/jobs/{job_name}"


class SpotTrainingViewLink(BaseOperatorLink):
    """Link to the task's chain in the provider's Spot training view (attempts, timeline)."""

    name = "Spot training view"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The view's page on this task instance's chain.

        :param operator: the task.
        :param ti_key: the task instance (dag_id, run_id, task_id, map_index).
        """
        from airflow.configuration import conf

        from airflow_spot_provider.plugins.chains import ChainKey, view_url

        map_index = -1 if ti_key.map_index is None else int(ti_key.map_index)
        key = ChainKey(ti_key.dag_id, ti_key.run_id, ti_key.task_id, map_index)
        return view_url(key, conf.get("api", "base_url", fallback="") or "")

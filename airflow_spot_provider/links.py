"""Operator extra link: the training job in the SageMaker console."""

from __future__ import annotations

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class SageMakerSpotTrainingJobLink(BaseAwsLink):
    """Link to the training job's page in the SageMaker console."""

    name = "SageMaker Training Job"
    key = "sagemaker_spot_training_job"
    format_str = BASE_AWS_CONSOLE_LINK + "/sagemaker/home?region={region_name}#/jobs/{job_name}"

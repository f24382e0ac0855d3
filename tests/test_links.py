"""The operator's console link."""

from __future__ import annotations

from airflow_spot_provider.links import SageMakerSpotTrainingJobLink, SpotTrainingViewLink
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator


def test_link_points_at_the_job_in_the_console() -> None:
    link = SageMakerSpotTrainingJobLink()
    url = link.format_link(
        aws_domain=SageMakerSpotTrainingJobLink.get_aws_domain("aws"),
        region_name="eu-west-1",
        job_name="churn-abc-a1",
    )
    assert url == (
        "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/churn-abc-a1"
    )


def test_operator_offers_the_link() -> None:
    names = [link.name for link in SageMakerSpotTrainingOperator.operator_extra_links]
    assert names == [SageMakerSpotTrainingJobLink.name, SpotTrainingViewLink.name]

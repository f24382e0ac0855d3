"""What Airflow's provider manager reads about this package (``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_spot_provider import __version__

PACKAGE_NAME = "airflow-spot-provider"
INTEGRATION = "Amazon SageMaker Managed Spot Training"
_OPERATORS = "airflow_spot_provider.operators.spot_training"
_SENSORS = "airflow_spot_provider.sensors.spot_training"
_HOOKS = "airflow_spot_provider.hooks.spot_training"
_TRIGGERS = "airflow_spot_provider.triggers.spot_training"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow: name, version and the pieces it registers."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "SageMaker Managed Spot Training",
        "description": (
            "Launch Amazon SageMaker managed spot training jobs from DAGs, follow their spot "
            "lifecycle, resubmit on MaxWaitTimeExceeded from checkpoints, report the savings."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": (
                    "https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html"
                ),
                "tags": ["aws"],
            }
        ],
        "operators": [{"integration-name": INTEGRATION, "python-modules": [_OPERATORS]}],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": [_SENSORS]}],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": [_HOOKS]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": [_TRIGGERS]}],
        "extra-links": [
            "airflow_spot_provider.links.SageMakerSpotTrainingJobLink",
            "airflow_spot_provider.links.SpotTrainingViewLink",
        ],
    }

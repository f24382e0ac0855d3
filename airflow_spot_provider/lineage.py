"""OpenLineage for a spot training task: the S3 channels in; the model and checkpoints out.

As the Amazon provider's SageMaker operators do, an S3 URI becomes a dataset with namespace
``s3://<bucket>`` and the key as its name. Inputs come from the request (``InputDataConfig``'s
S3 channels); outputs are the model artifact of the chain's last attempt (from the task's
result) and the checkpoint prefix every attempt shares. Nothing is read from AWS.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def s3_dataset_id(uri: str) -> tuple[str, str] | None:
    """An S3 URI as an OpenLineage dataset's (namespace, name); None if it is not one.

    :param uri: ``s3://bucket/key``.
    """
    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return (f"s3://{bucket}", key.rstrip("/")) if bucket else None


def input_uris(request: Mapping[str, Any]) -> list[str]:
    """The S3 URIs of the request's input channels, in channel order.

    :param request: the CreateTrainingJob request.
    """
    uris = []
    for channel in request.get("InputDataConfig") or ():
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        if source.get("S3Uri"):
            uris.append(str(source["S3Uri"]))
    return uris


def output_uris(request: Mapping[str, Any], result: Mapping[str, Any] | None) -> list[str]:
    """The model artifact (from the result) and the checkpoint prefix (result, else request).

    :param request: the CreateTrainingJob request.
    :param result: the task's return value, or None when it is not known.
    """
    result = result or {}
    checkpoint = result.get("checkpoint_s3_uri") or (request.get("CheckpointConfig") or {}).get(
        "S3Uri"
    )
    return [str(uri) for uri in (result.get("model_artifact_uri"), checkpoint) if uri]


def _datasets(uris: Iterable[str]) -> list[Any]:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    ids = [i for i in (s3_dataset_id(uri) for uri in uris) if i is not None]
    return [Dataset(namespace=ns, name=name, facets={}) for ns, name in dict.fromkeys(ids)]


def operator_lineage(request: Mapping[str, Any], result: Mapping[str, Any] | None) -> Any:
    """The ``OperatorLineage`` of a spot training task (needs the OpenLineage provider).

    :param request: the CreateTrainingJob request (rendered).
    :param result: the task's return value, or None.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(
        inputs=_datasets(input_uris(request)),
        outputs=_datasets(output_uris(request, result)),
    )

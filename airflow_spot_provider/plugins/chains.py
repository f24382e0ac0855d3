"""What the Spot training view shows of one chain, made from the task's return value only.

Pure functions: a row of the list (figures, cost when prices are configured) and a chain's
detail (each attempt's timeline and links). Nothing here reads AWS or the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from airflow_spot_provider.timeline import summary_timelines

VIEW_PREFIX = "/spot-training"


@dataclass(frozen=True)
class ChainKey:
    """The task instance whose return value holds the chain.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param task_id: the task.
    :param map_index: the map index (-1 when not mapped).
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def query(self) -> str:
        """The key as a query string (the view's link to this chain)."""
        return urlencode({k: str(v) for k, v in asdict(self).items()})


def view_url(key: ChainKey, base_url: str = "") -> str:
    """The view's page opened on one chain.

    :param key: the chain's task instance.
    :param base_url: the api-server's public base URL; "" for a path on the same host.
    """
    return f"{base_url.rstrip('/')}{VIEW_PREFIX}/?{key.query()}"


def task_log_url(key: ChainKey) -> str:
    """The task instance's page (its log) in the Airflow UI, as a path.

    :param key: the chain's task instance.
    """
    path = f"/dags/{quote(key.dag_id, safe='')}/runs/{quote(key.run_id, safe='')}"
    path += f"/tasks/{quote(key.task_id, safe='')}"
    return path + (f"/mapped/{key.map_index}" if key.map_index >= 0 else "")


def region_of(job_arn: str | None) -> tuple[str, str] | None:
    """(partition, region) of a SageMaker ARN; None if it is not one.

    :param job_arn: ``arn:<partition>:sagemaker:<region>:<account>:training-job/<name>``.
    """
    parts = (job_arn or "").split(":")
    if len(parts) < 6 or parts[0] != "arn" or not parts[3]:
        return None
    return parts[1], parts[3]


def console_url(job_arn: str | None, job_name: str) -> str | None:
    """The job's page in the SageMaker console (the region comes from the chain's ARN).

    :param job_arn: any ARN of the chain.
    :param job_name: the job.
    """
    from airflow_spot_provider.links import SageMakerSpotTrainingJobLink

    where = region_of(job_arn)
    if where is None:
        return None
    partition, region = where
    return str(
        SageMakerSpotTrainingJobLink().format_link(
            aws_domain=SageMakerSpotTrainingJobLink.get_aws_domain(partition),
            region_name=region,
            job_name=job_name,
        )
    )


def s3_console_url(uri: str | None) -> str | None:
    """The S3 console's page of a prefix.

    :param uri: ``s3://bucket/prefix/``.
    """
    if not uri or not uri.startswith("s3://"):
        return None
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    query = urlencode({"prefix": prefix}) if prefix else ""
    return f"https://s3.console.aws.amazon.com/s3/buckets/{quote(bucket)}?{query}"


def chain_cost(result: Mapping[str, Any], prices: Mapping[str, float]) -> dict[str, float] | None:
    """What the chain cost and what the same training time would cost on demand, in USD.

    SageMaker bills managed spot as ``BillableTimeInSeconds`` at the on-demand rate, so both
    figures use the on-demand hourly price of each attempt's instance type.

    :param result: the task's return value.
    :param prices: instance type -> on-demand USD per instance-hour.
    :return: ``{"cost", "on_demand_cost"}``, or None when a price or a figure is missing.
    """
    cost = on_demand = 0.0
    for attempt in result.get("attempts") or ():
        price = prices.get(str(attempt.get("instance_type")))
        billable, training = attempt.get("billable_seconds"), attempt.get("training_seconds")
        if price is None or (training and billable is None):
            return None
        count = int(attempt.get("instance_count") or 1)
        cost += (billable or 0) * count * price / 3600
        on_demand += (training or 0) * count * price / 3600
    return {"cost": round(cost, 4), "on_demand_cost": round(on_demand, 4)}


@dataclass(frozen=True)
class StoredChain:
    """A chain's task instance, its return value and when that was written.

    :param key: the task instance.
    :param result: the return value.
    :param written_at: the XCom's timestamp (the chain's end).
    """

    key: ChainKey
    result: Mapping[str, Any]
    written_at: datetime | None = None


def chain_row(chain: StoredChain, prices: Mapping[str, float]) -> dict[str, Any]:
    """One row of the view's list.

    :param chain: the chain as stored.
    :param prices: instance type -> on-demand USD per instance-hour (may be empty).
    """
    key, result, ended_at = chain.key, chain.result, chain.written_at
    attempts = result.get("attempts") or ()
    totals = result.get("totals") or {}
    return {
        **asdict(key),
        "ended_at": ended_at.isoformat() if ended_at else None,
        "first_job_name": attempts[0].get("job_name") if attempts else result.get("job_name"),
        "attempts": len(attempts),
        "outcome": result.get("outcome"),
        "given_up_reason": result.get("given_up_reason"),
        "interruptions": totals.get("interruptions"),
        "training_seconds": totals.get("training_seconds"),
        "billable_seconds": totals.get("billable_seconds"),
        "savings_percent": totals.get("effective_savings_percent"),
        "cost": chain_cost(result, prices) if prices else None,
        "checkpoint_s3_uri": result.get("checkpoint_s3_uri"),
        "model_artifact_uri": result.get("model_artifact_uri"),
        "links": {
            "task_log": task_log_url(key),
            "checkpoints": s3_console_url(result.get("checkpoint_s3_uri")),
            "view": view_url(key),
        },
    }


def chain_detail(chain: StoredChain, prices: Mapping[str, float]) -> dict[str, Any]:
    """A chain's row, and each attempt with its figures, timeline and console link.

    :param chain: the chain as stored (its write time ends a segment left open).
    :param prices: instance type -> on-demand USD per instance-hour (may be empty).
    """
    result = chain.result
    timelines = summary_timelines(result, now=chain.written_at)
    attempts = []
    for attempt, timeline in zip(result.get("attempts") or (), timelines, strict=True):
        attempts.append(
            {
                **{k: v for k, v in attempt.items() if k != "transitions"},
                **timeline,
                "console": console_url(result.get("job_arn"), str(attempt.get("job_name"))),
            }
        )
    return {**chain_row(chain, prices), "attempt_list": attempts}


def is_chain_result(value: Any) -> bool:
    """Whether an XCom value is a spot chain's summary (attempts and totals).

    :param value: the deserialized XCom value.
    """
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("attempts"), list)
        and isinstance(value.get("totals"), Mapping)
    )


def parse_prices(text: str) -> dict[str, float]:
    """Read ``[spot_training] hourly_prices``: a JSON object, instance type -> USD per hour.

    :param text: the option's value ("" when unset).
    :raises ValueError: naming the option, the value and the rule.
    """
    if not text.strip():
        return {}
    rule = 'a JSON object of instance type -> on-demand USD per hour, e.g. {"ml.m5.xlarge": 0.23}'
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as bad:
        raise ValueError(f"[spot_training] hourly_prices={text!r}: must be {rule}") from bad
    if not isinstance(raw, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in raw.values()
    ):
        raise ValueError(f"[spot_training] hourly_prices={text!r}: must be {rule}")
    return {str(k): float(v) for k, v in raw.items()}

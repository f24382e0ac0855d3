"""The job model of the simulator: work, checkpoints, overheads, deadline, request and prices."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_spot_provider.emulator.market import BUILTIN_PRICES

__all__ = ["JobModel", "Price", "load_prices", "price_of"]


@dataclass(frozen=True)
class JobModel:
    """One training job as the simulator runs it.

    Training progresses in training seconds; every ``checkpoint_interval_seconds`` of work the
    script spends ``checkpoint_cost_seconds`` writing a checkpoint (training paused, billed). A
    spot interruption loses what was trained since the last finished checkpoint; a stop
    (MaxWait, MaxRuntime, StopTrainingJob) does not: the script checkpoints on SIGTERM.

    :param work_hours: useful training of the whole job, uninterrupted.
    :param checkpoint_interval_seconds: work between two checkpoints.
    :param checkpoint_cost_seconds: time to write one checkpoint.
    :param restart_overhead_seconds: each (re)start: instances, download, checkpoint load.
    :param upload_seconds: the model upload at the end.
    :param deadline_factor: the deadline is this many on-demand durations after the start.
    :param max_runtime_factor: MaxRuntimeInSeconds as a multiple of the on-demand duration.
    :param max_wait_factor: MaxWaitTimeInSeconds as a multiple (>= max_runtime_factor).
    :param instance_type: the instance type (sets the price).
    """

    work_hours: float = 8.0
    checkpoint_interval_seconds: float = 1800.0
    checkpoint_cost_seconds: float = 60.0
    restart_overhead_seconds: float = 300.0
    upload_seconds: float = 60.0
    deadline_factor: float = 1.5
    max_runtime_factor: float = 1.25
    max_wait_factor: float = 1.25
    instance_type: str = "ml.p3.2xlarge"

    def __post_init__(self) -> None:
        positive = ("work_hours", "checkpoint_interval_seconds", "deadline_factor")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"JobModel.{name}={getattr(self, name)!r}: must be > 0")
        for name in ("checkpoint_cost_seconds", "restart_overhead_seconds", "upload_seconds"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"JobModel.{name}={getattr(self, name)!r}: must be >= 0")
        if not 1 <= self.max_runtime_factor <= self.max_wait_factor:
            raise ValueError(
                f"JobModel.max_wait_factor={self.max_wait_factor!r}: must be >="
                f" max_runtime_factor ({self.max_runtime_factor!r}) >= 1 (SageMaker's rule)"
            )

    @property
    def checkpoint_period_seconds(self) -> float:
        """Training seconds from one finished checkpoint to the next (work plus writing)."""
        return self.checkpoint_interval_seconds + self.checkpoint_cost_seconds

    @property
    def training_seconds(self) -> float:
        """Training seconds of the whole job uninterrupted, checkpoint writing included."""
        work = self.work_hours * 3600.0
        return work * self.checkpoint_period_seconds / self.checkpoint_interval_seconds

    @property
    def on_demand_seconds(self) -> float:
        """Wall time of one uninterrupted on-demand run: start, training, upload."""
        return self.restart_overhead_seconds + self.training_seconds + self.upload_seconds

    @property
    def deadline_seconds(self) -> float:
        """The deadline, in seconds after the job's start."""
        return self.deadline_factor * self.on_demand_seconds

    def request(self, *, spot: bool) -> dict[str, Any]:
        """The CreateTrainingJob request of attempt 1 (no name: the engine names attempts).

        :param spot: managed spot training, or on-demand.
        """
        stopping: dict[str, Any] = {
            "MaxRuntimeInSeconds": math.ceil(self.max_runtime_factor * self.on_demand_seconds)
        }
        if spot:
            stopping["MaxWaitTimeInSeconds"] = math.ceil(
                self.max_wait_factor * self.on_demand_seconds
            )
        return {
            "AlgorithmSpecification": {
                "TrainingImage": "trainer:latest",
                "TrainingInputMode": "File",
            },
            "RoleArn": "arn:aws:iam::123456789012:role/sagemaker",
            "OutputDataConfig": {"S3OutputPath": "s3://simulated/output"},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": 50,
            },
            "StoppingCondition": stopping,
            "EnableManagedSpotTraining": spot,
            "CheckpointConfig": {
                "S3Uri": "s3://simulated/checkpoints/",
                "LocalPath": "/opt/ml/checkpoints",
            },
        }


@dataclass(frozen=True)
class Price:
    """On-demand price and spot discount of one instance type.

    :param on_demand_per_hour: USD per instance-hour.
    :param spot_discount: fraction saved on spot (0..1).
    """

    on_demand_per_hour: float
    spot_discount: float

    @property
    def spot_per_hour(self) -> float:
        """USD per spot instance-hour."""
        return self.on_demand_per_hour * (1 - self.spot_discount)


def price_of(instance_type: str, table: Mapping[str, Price] | None = None) -> Price:
    """The price of a type: from ``table``, else the built-in table of the embedded backend.

    :param instance_type: e.g. ``ml.p3.2xlarge``.
    :param table: the user's prices, overriding the built-in ones.
    :raises ValueError: a type in neither table.
    """
    if table and instance_type in table:
        return table[instance_type]
    if instance_type in BUILTIN_PRICES:
        return Price(*BUILTIN_PRICES[instance_type])
    known = sorted({*BUILTIN_PRICES, *(table or {})})
    raise ValueError(f"no price for instance type {instance_type!r}; known: {', '.join(known)}")


def load_prices(path: Path | str) -> dict[str, Price]:
    """Read a price table CSV: ``instance_type,on_demand_per_hour,spot_discount``.

    :param path: the CSV file (a header line, then one row per type).
    :raises ValueError: naming the file, line and rule.
    """
    path = Path(path)
    table: dict[str, Price] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle)
        wanted = ["instance_type", "on_demand_per_hour", "spot_discount"]
        if rows.fieldnames != wanted:
            raise ValueError(f"{path}: the header must be {','.join(wanted)}")
        for line, row in enumerate(rows, start=2):
            try:
                price = Price(float(row["on_demand_per_hour"]), float(row["spot_discount"]))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}:{line}: prices must be numbers ({err})") from err
            if price.on_demand_per_hour <= 0 or not 0 <= price.spot_discount < 1:
                raise ValueError(
                    f"{path}:{line}: on_demand_per_hour must be > 0 and spot_discount in [0, 1)"
                )
            table[row["instance_type"]] = price
    return table

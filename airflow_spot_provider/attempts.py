"""The chain of attempts of one spot training: names, history and what to do next.

An attempt chain is identified by the name of its first job. Every later attempt has a
deterministic name derived from it, so the whole history can be rebuilt from SageMaker alone
(one ListTrainingJobs call and a describe per attempt): an Airflow retry, a dead worker or a
sensor in reschedule mode finds the jobs it started instead of creating duplicates.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_spot_provider.lifecycle import SpotJobReport, Transition

_ATTEMPT_SUFFIX = re.compile(r"^(?P<base>.+)-a(?P<n>[1-9][0-9]*)$")
# Fields of DescribeTrainingJob that echo the CreateTrainingJob request (Tags are not echoed).
_ECHOED_REQUEST_FIELDS = (
    "TrainingJobName",
    "HyperParameters",
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "VpcConfig",
    "StoppingCondition",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining",
    "CheckpointConfig",
    "DebugHookConfig",
    "ExperimentConfig",
    "TensorBoardOutputConfig",
    "Environment",
    "RetryStrategy",
    "RemoteDebugConfig",
    "InfraCheckConfig",
)


def chain_base(first_name: str) -> str:
    """The base shared by every attempt of a chain.

    :param first_name: the name of the chain's first job (``<base>-a1`` when this provider made it).
    """
    match = _ATTEMPT_SUFFIX.match(first_name)
    return match.group("base") if match and match.group("n") == "1" else first_name


def attempt_name(first_name: str, attempt: int) -> str:
    """The job name of attempt ``attempt`` (1-based) of the chain started by ``first_name``.

    :param first_name: the name of the chain's first job.
    :param attempt: the attempt number.
    """
    if attempt == 1:
        return first_name
    name = f"{chain_base(first_name)}-a{attempt}"
    if len(name) > 63:
        raise ValueError(f"attempt name {name!r} is longer than 63 characters")
    return name


def attempts_in(names: Iterable[str], first_name: str) -> list[str]:
    """The chain's job names among ``names``, in attempt order, stopping at the first gap.

    :param names: job names, e.g. from ``ListTrainingJobs(NameContains=base)``.
    :param first_name: the name of the chain's first job.
    """
    present = set(names)
    chain: list[str] = []
    attempt = 1
    while (name := attempt_name(first_name, attempt)) in present:
        chain.append(name)
        attempt += 1
    return chain


def request_from_describe(describe: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild a CreateTrainingJob request from a DescribeTrainingJob response.

    Used where only a job name is known (the sensor) to resubmit the same job.
    Tags are not echoed by SageMaker and are therefore not carried over.

    :param describe: the response.
    """
    return {k: copy.deepcopy(describe[k]) for k in _ECHOED_REQUEST_FIELDS if k in describe}


@dataclass
class FollowState:
    """What has been logged of one job: transitions and CloudWatch positions.

    :param job_name: the job followed.
    :param transitions: how many ``SecondaryStatusTransitions`` were logged.
    :param log_tokens: CloudWatch stream -> next forward token.
    """

    job_name: str
    transitions: int = 0
    log_tokens: dict[str, str] = field(default_factory=dict)

    def take_new(self, report: SpotJobReport) -> list[Transition]:
        """The transitions not logged yet, and mark them logged.

        :param report: the job's latest report.
        """
        new = list(report.transitions[self.transitions :])
        self.transitions = len(report.transitions)
        return new

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "job_name": self.job_name,
            "transitions": self.transitions,
            "log_tokens": dict(self.log_tokens),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FollowState:
        """Inverse of :meth:`to_json`.

        :param data: a dict made by :meth:`to_json`.
        """
        return cls(
            job_name=str(data["job_name"]),
            transitions=int(data.get("transitions", 0)),
            log_tokens={str(k): str(v) for k, v in (data.get("log_tokens") or {}).items()},
        )


def transition_line(job_name: str, transition: Transition) -> str:
    """One log line for a transition: job, status, start time, SageMaker's message.

    :param job_name: the job.
    :param transition: the transition.
    """
    start = transition.start.isoformat() if transition.start else "-"
    message = f" - {transition.message}" if transition.message else ""
    return f"{job_name}: {transition.status.value} at {start}{message}"

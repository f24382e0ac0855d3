"""The chain of attempts of one spot training: names, history and what to do next.

An attempt chain is identified by the name of its first job. Every later attempt has a
deterministic name derived from it, so the whole history can be rebuilt from SageMaker alone
(one ListTrainingJobs call and a describe per attempt): an Airflow retry, a dead worker or a
sensor in reschedule mode finds the jobs it started instead of creating duplicates.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_spot_provider.lifecycle import SpotJobReport, Transition

_ATTEMPT_SUFFIX = re.compile(r"^(?P<base>.+)-a(?P<n>[1-9][0-9]*)$")


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


@functools.cache
def _echoed_request_fields() -> tuple[str, ...]:
    """The CreateTrainingJob request members that DescribeTrainingJob echoes, in request order.

    Derived from botocore's model, so a field botocore learns is carried over without a code
    change. Loaded on first use (the model is a few MB of JSON); Tags are never carried over.
    """
    import botocore.session
    from botocore.model import StructureShape

    model = botocore.session.get_session().get_service_model("sagemaker")
    request = model.operation_model("CreateTrainingJob").input_shape
    response = model.operation_model("DescribeTrainingJob").output_shape
    # An empty list would silently drop the whole request on resubmission: fail loudly instead.
    if not isinstance(request, StructureShape) or not isinstance(response, StructureShape):
        raise RuntimeError("botocore's SageMaker model lacks the CreateTrainingJob shapes")
    echoed = set(response.members) - {"Tags"}
    return tuple(name for name in request.members if name in echoed)


def request_from_describe(describe: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild a CreateTrainingJob request from a DescribeTrainingJob response.

    Used where only a job name is known (the sensor) to resubmit the same job. The fields kept
    are the request's members that the response also has (from botocore's model), deep-copied;
    Tags are not echoed by SageMaker and are therefore not carried over.

    :param describe: the response (not modified).
    """
    return {k: copy.deepcopy(describe[k]) for k in _echoed_request_fields() if k in describe}


@dataclass
class FollowState:
    """What has been logged of one job: transitions and CloudWatch positions.

    :param job_name: the job followed.
    :param transitions: how many ``SecondaryStatusTransitions`` were logged.
    :param log_tokens: CloudWatch stream -> next forward token.
    :param message: the message of the last transition as logged; SageMaker rewrites the open
        transition's message (e.g. "Insufficient capacity error from EC2 while launching
        instances, retrying!" on ``Starting``), and such a change is logged too.
    """

    job_name: str
    transitions: int = 0
    log_tokens: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def take_new(self, report: SpotJobReport) -> list[Transition]:
        """The transitions to log (new ones, or the open one whose message changed).

        :param report: the job's latest report.
        """
        seen = report.transitions[: self.transitions]
        new = list(report.transitions[self.transitions :])
        if not new and seen and seen[-1].message != self.message:
            new = [seen[-1]]
        self.transitions = len(report.transitions)
        if report.transitions:
            self.message = report.transitions[-1].message
        return new

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "job_name": self.job_name,
            "transitions": self.transitions,
            "log_tokens": dict(self.log_tokens),
            "message": self.message,
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
            message=str(data.get("message") or ""),
        )


def transition_line(job_name: str, transition: Transition) -> str:
    """One log line for a transition: job, status, start time, SageMaker's message.

    :param job_name: the job.
    :param transition: the transition.
    """
    start = transition.start.isoformat() if transition.start else "-"
    message = f" - {transition.message}" if transition.message else ""
    return f"{job_name}: {transition.status.value} at {start}{message}"

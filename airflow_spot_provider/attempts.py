"""The chain of attempts of one spot training: names, history and what to do next.

An attempt chain is identified by the name of its first job. Every later attempt has a
deterministic name derived from it, so the whole history can be rebuilt from SageMaker alone
(one ListTrainingJobs call and a describe per attempt): an Airflow retry, a dead worker or a
sensor in reschedule mode finds the jobs it started instead of creating duplicates.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from airflow_spot_provider.job_names import attempt_job_name

# Chains longer than this are not found by one listing (no policy comes near it).
_LONGEST_CHAIN: Final = 10**6
_ATTEMPT_SUFFIX = re.compile(r"^(?P<base>.+)-a(?P<n>[1-9][0-9]*)$")


def chain_base(first_name: str) -> str:
    """The base shared by every attempt of a chain.

    :param first_name: the name of the chain's first job (``<base>-a1`` when this provider made it).
    """
    match = _ATTEMPT_SUFFIX.match(first_name)
    return match.group("base") if match and match.group("n") == "1" else first_name


def attempt_name(first_name: str, attempt: int) -> str:
    """The job name of attempt ``attempt`` (1-based) of the chain started by ``first_name``.

    The one job-name function (:func:`~airflow_spot_provider.job_names.attempt_job_name`) on the
    chain's base: never raises on a long name, it hashes instead.

    :param first_name: the name of the chain's first job.
    :param attempt: the attempt number.
    """
    return first_name if attempt == 1 else attempt_job_name(chain_base(first_name), attempt)


def chain_filter(first_name: str) -> str:
    """A ``NameContains`` filter that every job of the chain matches (attempts up to 10**6).

    Long names are hashed (:func:`attempt_job_name`), keeping a shorter readable prefix: the
    filter is the part the first name and a long attempt name share.

    :param first_name: the name of the chain's first job.
    """
    names = [attempt_name(first_name, n) for n in (1, 2, _LONGEST_CHAIN)]
    return os.path.commonprefix(names)  # noqa: RUF071  (names, not paths)


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

"""The rules a CreateTrainingJob request must follow, spot or on-demand, checked before AWS sees it.

The explicit rules of the spot feature come first, then botocore's model of the request
(:mod:`airflow_spot_provider.request_model`); every check collects, none raises, so a refused
request names every broken rule at once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sized
from typing import Any, Final, cast

from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation
from airflow_spot_provider.request_input import plain_copy
from airflow_spot_provider.request_model import _input_shape, _model_pattern, _model_violations

# The logger's name predates the split of request.py; logging configurations and tests select it.
log = logging.getLogger("airflow_spot_provider.request")

SAGEMAKER_MAX_RUNTIME_SECONDS: Final = 2_419_200  # 28 days
# The API model gives MaxWaitTimeInSeconds a minimum only. *Unverified*: we assume it cannot
# exceed MaxRuntimeInSeconds' documented maximum of 28 days (SAGEMAKER_FACTS.md).
SAGEMAKER_MAX_WAIT_SECONDS: Final = SAGEMAKER_MAX_RUNTIME_SECONDS
DEFAULT_MAX_RUNTIME_SECONDS: Final = 86_400  # the service's default when the field is absent
BUILTIN_NO_CHECKPOINT_MAX_WAIT_SECONDS: Final = 3600
KEEP_ALIVE_MAX_SECONDS: Final = 21_600
# The API reference's prose says 256 characters for keys and values; botocore's model allows 2500
# for values. We keep the documented 256 (stricter, so nothing we accept is refused by AWS).
HYPERPARAMETER_MAX_CHARS: Final = 256
JOB_NAME_PATTERN: Final = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
S3_URI_PATTERN: Final = re.compile(r"^(https|s3)://([^/]+)/?(.*)$")
# Repositories of SageMaker's built-in algorithm images (the part after the ECR registry host).
# "forecasting-deepar" is the repository AWS publishes DeepAR under; "deepar-forecasting" is kept
# for the name used in our brief.
BUILTIN_ALGORITHM_REPOSITORIES: Final = frozenset(
    {
        "xgboost", "sagemaker-xgboost", "linear-learner", "kmeans", "pca",
        "factorization-machines", "ntm", "lda", "blazingtext", "image-classification",
        "object-detection", "semantic-segmentation", "seq2seq", "randomcutforest", "knn",
        "object2vec", "ipinsights", "forecasting-deepar", "deepar-forecasting",
    }
)  # fmt: skip

_MAX_RUN = "StoppingCondition.MaxRuntimeInSeconds"
_MAX_WAIT = "StoppingCondition.MaxWaitTimeInSeconds"
_MISSING: Final = object()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Rules:
    """Collects the violations of one request; every check reads, none raises.

    :param request: the request to check.
    """

    def __init__(self, request: Mapping[str, Any]) -> None:
        self.request = request
        self.found: list[Violation] = []

    def add(self, field: str, value: Any, rule: str) -> None:
        self.found.append(Violation(field, value, rule))

    def get(self, field: str) -> Any:
        """The value at a dotted path; ``_MISSING`` if absent, None or under a non-mapping."""
        node: Any = self.request
        for part in field.split("."):
            if not isinstance(node, Mapping) or node.get(part) is None:
                return _MISSING
            node = node[part]
        return node

    def present(self, field: str, required: bool) -> Any:
        value = self.get(field)
        if value is _MISSING and required:
            self.add(field, None, "is required")
        return value

    def section(self, field: str, *, required: bool = False) -> bool:
        """Whether ``field`` is a mapping whose members can be checked."""
        value = self.present(field, required)
        if value is not _MISSING and not isinstance(value, Mapping):
            self.add(field, value, "must be a mapping (a JSON object)")
        return isinstance(value, Mapping)

    def integer(
        self, field: str, low: int, high: int | None = None, *, required: bool = False
    ) -> int | None:
        value = self.present(field, required)
        if value is _MISSING:
            return None
        if not _is_int(value) or value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            self.add(field, value, f"must be an integer {bounds}")
            return None
        return cast(int, value)

    def text(self, field: str, *, required: bool = False, max_len: int | None = None,
             pattern: re.Pattern[str] | None = None) -> str | None:  # fmt: skip
        value = self.present(field, required)
        if value is _MISSING:
            return None
        if not isinstance(value, str) or (max_len is not None and len(value) > max_len):
            longest = "" if max_len is None else f" of at most {max_len} characters"
            self.add(field, value, f"must be a string{longest}")
        elif pattern is not None and not pattern.fullmatch(value):
            self.add(field, value, f"must match the pattern {pattern.pattern}")
        else:
            return value
        return None

    def size(self, field: str, kind: type, low: int, high: int) -> None:
        value = self.get(field)
        if value is _MISSING:
            return
        if not isinstance(value, kind):
            self.add(field, value, f"must be a {'list' if kind is list else 'mapping'}")
        elif not low <= (count := len(cast("Sized", value))) <= high:
            self.add(field, value, f"must have {low}..{high} entries, not {count}")


def _required_rules(r: _Rules, require_name: bool) -> None:
    r.text("TrainingJobName", required=require_name, pattern=JOB_NAME_PATTERN)
    role = _input_shape().members["RoleArn"].metadata.get("pattern")
    r.text("RoleArn", required=True, pattern=_model_pattern(f"^{role}$" if role else None))
    if r.section("OutputDataConfig", required=True):
        r.text("OutputDataConfig.S3OutputPath", required=True, max_len=1024, pattern=S3_URI_PATTERN)
    if r.section("AlgorithmSpecification", required=True):
        image = r.text("AlgorithmSpecification.TrainingImage")
        if not image and not r.text("AlgorithmSpecification.AlgorithmName"):
            rule = "is required unless AlgorithmSpecification.AlgorithmName is given"
            r.add("AlgorithmSpecification.TrainingImage", image, rule)
        r.text("AlgorithmSpecification.TrainingInputMode", required=True)
    if r.section("ResourceConfig", required=True):
        kind = r.text("ResourceConfig.InstanceType", required=True)
        if kind is not None and not kind.startswith("ml."):
            r.add("ResourceConfig.InstanceType", kind, "must be an ML instance type (ml.*)")
        r.integer("ResourceConfig.InstanceCount", 1, required=True)
        r.integer("ResourceConfig.VolumeSizeInGB", 1, required=True)
        r.integer("ResourceConfig.KeepAlivePeriodInSeconds", 0, KEEP_ALIVE_MAX_SECONDS)


def _limit_rules(r: _Rules) -> None:
    if r.section("StoppingCondition"):
        r.integer(_MAX_RUN, 1, SAGEMAKER_MAX_RUNTIME_SECONDS)
    if r.section("RetryStrategy"):
        r.integer("RetryStrategy.MaximumRetryAttempts", 1, 30, required=True)
    if r.section("CheckpointConfig"):
        r.text("CheckpointConfig.S3Uri", required=True, max_len=1024, pattern=S3_URI_PATTERN)
        local = r.text("CheckpointConfig.LocalPath", max_len=4096)
        if local is not None and not local.startswith("/"):
            r.add("CheckpointConfig.LocalPath", local, "must be an absolute path")
    r.size("Tags", list, 0, 50)
    r.size("Environment", Mapping, 0, 100)
    r.size("InputDataConfig", list, 1, 20)
    r.size("HyperParameters", Mapping, 0, 100)
    hyperparameters = r.get("HyperParameters")
    if not isinstance(hyperparameters, Mapping):
        return
    rule = f"keys and values must be strings of at most {HYPERPARAMETER_MAX_CHARS} characters"
    for key, value in hyperparameters.items():
        for item in (key, value):
            if not isinstance(item, str) or len(item) > HYPERPARAMETER_MAX_CHARS:
                r.add(f"HyperParameters.{key}", item, rule)
                break


def is_builtin_algorithm_image(image: str) -> bool:
    """Whether an ECR image URI names a SageMaker built-in algorithm.

    :param image: ``<registry>/<repository>[:tag|@digest]``.
    """
    _, _, path = image.partition("/")
    return re.split(r"[:@]", path, maxsplit=1)[0] in BUILTIN_ALGORITHM_REPOSITORIES


def _is_builtin_algorithm(r: _Rules) -> bool:
    if r.get("AlgorithmSpecification.AlgorithmName") is not _MISSING:
        return True  # an algorithm resource: built-in or Marketplace
    image = r.get("AlgorithmSpecification.TrainingImage")
    # Unverified: an XGBoost image in script mode (sagemaker_program) runs the user's own script,
    # which can checkpoint, so we do not treat it as the built-in algorithm.
    script_mode = r.get("HyperParameters.sagemaker_program") is not _MISSING
    return isinstance(image, str) and is_builtin_algorithm_image(image) and not script_mode


def _stopping_rules(r: _Rules, spot: bool) -> None:
    if not spot:
        if r.get(_MAX_WAIT) is not _MISSING:
            rule = "is only supported when EnableManagedSpotTraining is true"
            r.add(_MAX_WAIT, r.get(_MAX_WAIT), rule)
        return
    wait = r.integer(_MAX_WAIT, 1, SAGEMAKER_MAX_WAIT_SECONDS, required=True)
    run = r.get(_MAX_RUN)
    run = DEFAULT_MAX_RUNTIME_SECONDS if run is _MISSING else run
    if wait is None:
        return
    if _is_int(run) and 1 <= run <= SAGEMAKER_MAX_RUNTIME_SECONDS and wait < run:
        r.add(_MAX_WAIT, wait, f"must be >= StoppingCondition.MaxRuntimeInSeconds ({run})")
    if r.get("CheckpointConfig") is _MISSING:
        if _is_builtin_algorithm(r) and wait > BUILTIN_NO_CHECKPOINT_MAX_WAIT_SECONDS:
            rule = (
                f"must be <= {BUILTIN_NO_CHECKPOINT_MAX_WAIT_SECONDS} for a built-in algorithm"
                " without CheckpointConfig"
            )
            r.add(_MAX_WAIT, wait, rule)
        else:
            name = r.get("TrainingJobName")
            log.warning(
                "Spot training job %s has no CheckpointConfig: an interruption restarts it from "
                "the beginning.",
                name if isinstance(name, str) else "(unnamed)",
            )


def _first_per_field(violations: list[Violation]) -> list[Violation]:
    """One violation per field: explicit rules come first and have the clearest words."""
    seen: dict[str, Violation] = {}
    for violation in violations:
        seen.setdefault(violation.field, violation)
    return list(seen.values())


def validate_training_request(
    request: Mapping[str, Any], *, require_name: bool = True
) -> list[Violation]:
    """Every rule a CreateTrainingJob request breaks, spot or on-demand; never raises.

    The spot rules apply when ``EnableManagedSpotTraining`` is true; ``MaxWaitTimeInSeconds``
    without it is a violation. A spot job without CheckpointConfig is logged as a warning.

    :param request: the CreateTrainingJob request.
    :param require_name: whether ``TrainingJobName`` must be present (it is checked if present).
    """
    if not isinstance(request, Mapping):
        return [Violation("request", request, "must be a mapping (the CreateTrainingJob request)")]
    found: list[Violation] = []
    # Checked on a bounded copy: every walk below then stays within plain_copy's limits.
    plain = plain_copy(request, "", found)
    if plain is None:
        return found
    rules = _Rules(plain)
    _required_rules(rules, require_name)
    _limit_rules(rules)
    _stopping_rules(rules, plain.get("EnableManagedSpotTraining") is True)
    return _first_per_field(found + rules.found + _model_violations(plain, require_name))


def validate_spot_request(
    request: Mapping[str, Any], *, require_name: bool = True
) -> list[Violation]:
    """Every rule a managed spot training request breaks; never raises.

    :param request: the CreateTrainingJob request.
    :param require_name: whether ``TrainingJobName`` must be present (it is checked if present).
    """
    found = []
    spot = request.get("EnableManagedSpotTraining") if isinstance(request, Mapping) else None
    if spot is not True:
        found.append(Violation("EnableManagedSpotTraining", spot, "must be true for spot training"))
    return _first_per_field(found + validate_training_request(request, require_name=require_name))


def check_spot_request(request: Mapping[str, Any], *, require_name: bool = True) -> None:
    """Raise if a managed spot training request breaks any rule.

    :param request: the CreateTrainingJob request.
    :param require_name: whether ``TrainingJobName`` must be present.
    :raises SpotRequestValidationError: with every violation.
    """
    violations = validate_spot_request(request, require_name=require_name)
    if violations:
        raise SpotRequestValidationError(violations)

"""Build and validate the CreateTrainingJob request of a managed spot training job.

Nothing invalid may reach the SageMaker API. :func:`build_spot_request` turns a user's base config
(often rendered from Airflow templates, so numbers may arrive as digit strings) plus the spot
arguments into a new request and refuses it with every broken rule at once. The rules are the
explicit ones of the spot feature plus botocore's own model of CreateTrainingJob (types, required
members, minimums via botocore's ParamValidator; maximums and patterns read from the same model), so
a request the builder accepts also passes botocore's parameter validation.

Job names are deterministic (:func:`task_job_base_name`, :func:`attempt_job_name`): the same task
instance and attempt give the same name on every Airflow retry, so a retry finds its job again.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sized
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation

if TYPE_CHECKING:
    from botocore.model import ListShape, MapShape, Shape, StructureShape

log = logging.getLogger(__name__)

SAGEMAKER_MAX_RUNTIME_SECONDS: Final = 2_419_200  # 28 days
DEFAULT_MAX_RUNTIME_SECONDS: Final = 86_400  # the service's default when the field is absent
BUILTIN_NO_CHECKPOINT_MAX_WAIT_SECONDS: Final = 3600
DEFAULT_CHECKPOINT_LOCAL_PATH: Final = "/opt/ml/checkpoints/"
DEFAULT_TRAINING_INPUT_MODE: Final = "File"
KEEP_ALIVE_MAX_SECONDS: Final = 21_600
# The API reference's prose says 256 characters for keys and values; botocore's model allows 2500
# for values. We keep the documented 256 (stricter, so nothing we accept is refused by AWS).
HYPERPARAMETER_MAX_CHARS: Final = 256
JOB_NAME_MAX_CHARS: Final = 63
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
_SECONDS_RULE = "must be a whole number of seconds: an int, a digit string or a timedelta"
_MISSING: Final = object()


def to_seconds(value: int | str | float | timedelta, field: str) -> int:
    """Return ``value`` as whole seconds; digit strings come from rendered Airflow templates.

    :param value: seconds as an int, a digit string, a whole float, or a timedelta.
    :param field: the request field it is for, named in the error.
    :raises SpotRequestValidationError: if ``value`` is no whole number of seconds.
    """
    seconds = _seconds_or_none(value)
    if seconds is None:
        raise SpotRequestValidationError([Violation(field, value, _SECONDS_RULE)])
    return seconds


def _seconds_or_none(value: object) -> int | None:
    if isinstance(value, bool):  # bool is an int subclass; True seconds is a bug, not 1
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, timedelta):
        return value.days * 86_400 + value.seconds if value.microseconds == 0 else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        try:
            return int(value)
        except ValueError:  # more digits than int() converts
            return None
    return None


# --- botocore's model of CreateTrainingJob ------------------------------------------------------


@functools.cache
def _input_shape() -> StructureShape:
    # Imported and loaded on first use: the sagemaker model is a few MB of JSON.
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return cast("StructureShape", model.operation_model("CreateTrainingJob").input_shape)


@functools.cache
def _model_pattern(pattern: str | None) -> re.Pattern[str] | None:
    r"""Compile a model pattern for Python, or None where that cannot be done faithfully.

    The model's patterns are Java regexes. Those Python cannot compile (``\p{L}``) or compiles
    with warnings are skipped; DOTALL keeps Python from being stricter than Java on newlines, so
    a difference can only let a request through to the API, never refuse a valid one.
    """
    if not pattern or pattern in (".*", "[\\S\\s]*"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return re.compile(pattern, re.DOTALL)
        except (re.error, Warning):
            return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _nodes(value: Any, shape: Shape, path: str) -> Iterator[tuple[str, Any, Shape]]:
    """Every (path, value, shape) of ``value`` whose container types match the model."""
    yield path, value, shape
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        members = cast("StructureShape", shape).members
        for key, item in value.items():
            if key in members:
                yield from _nodes(item, members[key], _join(path, key))
    elif kind == "list" and isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _nodes(item, cast("ListShape", shape).member, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        map_shape = cast("MapShape", shape)
        for key, item in value.items():
            yield from _nodes(key, map_shape.key, _join(path, str(key)))
            yield from _nodes(item, map_shape.value, _join(path, str(key)))


def _model_rule(value: Any, shape: Shape) -> str | None:
    """The model constraint ``value`` breaks that botocore's ParamValidator does not check."""
    kind, meta = shape.type_name, shape.metadata
    top = meta.get("max")
    if kind in ("integer", "long") and isinstance(value, bool):
        return "must be an integer, not a boolean"
    if kind in ("integer", "long") and isinstance(value, int) and top is not None and value > top:
        return f"must be <= {top}"
    if kind in ("list", "map") and isinstance(value, list | tuple | dict):
        return f"must have at most {top} entries" if top is not None and len(value) > top else None
    if kind != "string" or not isinstance(value, str):
        return None  # enums are left alone on purpose: AWS adds values before botocore knows them
    if top is not None and len(value) > top:
        return f"must be at most {top} characters"
    pattern = _model_pattern(meta.get("pattern"))
    if pattern is not None and not pattern.fullmatch(value):
        return f"must match the pattern {pattern.pattern}"
    return None


def _botocore_violations(request: Mapping[str, Any], require_name: bool) -> list[Violation]:
    """Translate botocore's ParamValidator findings (types, required, minimums) to Violations."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(request, _input_shape())
    errors = getattr(report, "_errors", None)  # (reason, name, details); there is no public view
    if not isinstance(errors, list):
        return [Violation("request", None, report.generate_report())] if report.has_errors() else []
    found = []
    for reason, name, details in errors:
        field = re.sub(r" \(key: (.*)\)$", lambda m: "." + m.group(1), name).lstrip(".")
        if reason == "missing required field":
            if details["required_name"] == "TrainingJobName" and not (field or require_name):
                continue
            found.append(Violation(_join(field, details["required_name"]), None, "is required"))
        elif reason == "unknown field":
            unknown, known = str(details["unknown_param"]), details["valid_names"]
            close = difflib.get_close_matches(unknown, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "known here: " + ", ".join(known)
            rule = f"is no CreateTrainingJob parameter; {hint}"
            found.append(Violation(_join(field, unknown), None, rule))
        elif reason == "invalid type":
            kinds = ", ".join(re.sub(r"<class '(\w+)'>", r"\1", t) for t in details["valid_types"])
            found.append(
                Violation(field or "request", details["param"], f"must be of type {kinds}")
            )
        elif reason in ("invalid range", "invalid length"):
            what = "length" if reason == "invalid length" else "value"
            rule = f"{what} must be >= {details['min_allowed']}"
            found.append(Violation(field, details["param"], rule))
        else:
            found.append(Violation(field or "request", details.get("param"), reason))
    return found


def _model_violations(request: Mapping[str, Any], require_name: bool) -> list[Violation]:
    found = _botocore_violations(request, require_name)
    for path, value, shape in _nodes(request, _input_shape(), ""):
        rule = _model_rule(value, shape)
        if rule is not None:
            found.append(Violation(path or "request", value, rule))
    return found


# --- the explicit rules ---------------------------------------------------------------------------


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
    wait = r.integer(_MAX_WAIT, 1, required=True)
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
            log.warning(
                "Spot training job %s has no CheckpointConfig: an interruption restarts it from "
                "the beginning.",
                r.request.get("TrainingJobName", "(unnamed)"),
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
    rules = _Rules(request)
    _required_rules(rules, require_name)
    _limit_rules(rules)
    _stopping_rules(rules, request.get("EnableManagedSpotTraining") is True)
    return _first_per_field(rules.found + _model_violations(request, require_name))


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


# --- the builder ----------------------------------------------------------------------------------


def _plain_copy(value: Any) -> Any:
    """A deep copy with plain containers (dict, list), as botocore and JSON expect."""
    if isinstance(value, Mapping):
        return {key: _plain_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_copy(item) for item in value]
    return copy.deepcopy(value)


def _load_config(config: Mapping[str, Any] | str, found: list[Violation]) -> dict[str, Any] | None:
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as err:
            found.append(Violation("config", config, f"must be JSON text of an object: {err}"))
            return None
    if not isinstance(config, Mapping):
        found.append(Violation("config", config, "must be a mapping (a CreateTrainingJob request)"))
        return None
    return cast(dict[str, Any], _plain_copy(config))


def _cast_ints(value: Any, shape: Shape) -> Any:
    """Digit strings where the model wants an integer become ints (the rest stays as it is)."""
    kind = shape.type_name
    if kind in ("integer", "long") and isinstance(value, str):
        seconds = _seconds_or_none(value)
        return value if seconds is None else seconds
    if kind == "structure" and isinstance(value, dict):
        members = cast("StructureShape", shape).members
        for key in value:
            if key in members:
                value[key] = _cast_ints(value[key], members[key])
    elif kind == "list" and isinstance(value, list):
        value[:] = [_cast_ints(item, cast("ListShape", shape).member) for item in value]
    elif kind == "map" and isinstance(value, dict):
        for key in value:
            value[key] = _cast_ints(value[key], cast("MapShape", shape).value)
    return value


def _fill_stopping_condition(
    request: dict[str, Any], max_run: Any, max_wait: Any, found: list[Violation]
) -> None:
    stop = request.setdefault("StoppingCondition", {})
    if not isinstance(stop, dict):
        return  # the validation names the wrong type
    stop.setdefault("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    for field, given in ((_MAX_RUN, max_run), (_MAX_WAIT, max_wait)):
        key = field.rpartition(".")[2]
        value = given if given is not None else stop.get(key)
        if value is not None:
            seconds = _seconds_or_none(value)
            stop[key] = value if seconds is None else seconds
            if seconds is None:
                found.append(Violation(field, value, _SECONDS_RULE))


def _fill_checkpoint(request: dict[str, Any], s3_uri: str | None, local_path: str | None) -> None:
    checkpoint = request.get("CheckpointConfig")
    if s3_uri is not None or local_path is not None:
        checkpoint = dict(checkpoint) if isinstance(checkpoint, Mapping) else {}
        given = {"S3Uri": s3_uri, "LocalPath": local_path}
        checkpoint.update({key: value for key, value in given.items() if value is not None})
        request["CheckpointConfig"] = checkpoint
    if isinstance(checkpoint, dict) and "S3Uri" in checkpoint:
        # The service's default, written out so the request says where checkpoints go.
        checkpoint.setdefault("LocalPath", DEFAULT_CHECKPOINT_LOCAL_PATH)


def _fill_defaults(request: dict[str, Any]) -> None:
    spec = request.get("AlgorithmSpecification")
    if isinstance(spec, dict):
        spec.setdefault("TrainingInputMode", DEFAULT_TRAINING_INPUT_MODE)
    hyperparameters = request.get("HyperParameters")
    if isinstance(hyperparameters, dict):
        # SageMaker takes strings only; JSON keeps numbers and booleans readable to the script.
        for key, value in hyperparameters.items():
            if isinstance(value, bool | int | float):
                hyperparameters[key] = json.dumps(value)


def build_spot_request(
    config: Mapping[str, Any] | str,
    *,
    checkpoint_s3_uri: str | None = None,
    checkpoint_local_path: str | None = None,
    max_run: int | str | timedelta | None = None,
    max_wait: int | str | timedelta | None = None,
    job_name: str | None = None,
) -> dict[str, Any]:
    """Build a managed spot CreateTrainingJob request and validate it before any AWS call.

    The result is a new dict (``config`` is never changed) with ``EnableManagedSpotTraining``
    true, ``StoppingCondition`` from ``max_run``/``max_wait`` (they override ``config``; a missing
    ``MaxRuntimeInSeconds`` gets the service default of one day), ``CheckpointConfig`` from the
    checkpoint arguments, ``TrainingInputMode`` defaulting to ``File``, digit strings cast to int
    where the API wants an integer, numbers and booleans of ``HyperParameters`` as JSON strings.
    Without ``job_name`` (and no ``TrainingJobName`` in ``config``) the name is not required
    yet: set it later and call :func:`check_spot_request`.

    :param config: the user's base CreateTrainingJob request, as a mapping or JSON text.
    :param checkpoint_s3_uri: ``CheckpointConfig.S3Uri``: reuse it to resume from checkpoints.
    :param checkpoint_local_path: ``CheckpointConfig.LocalPath`` (default /opt/ml/checkpoints/).
    :param max_run: ``MaxRuntimeInSeconds``: training time, summed over restarts.
    :param max_wait: ``MaxWaitTimeInSeconds``: waiting plus training, from creation.
    :param job_name: ``TrainingJobName``.
    :raises SpotRequestValidationError: with every violation.
    """
    found: list[Violation] = []
    request = _load_config(config, found)
    if request is None:
        raise SpotRequestValidationError(found)
    request["EnableManagedSpotTraining"] = True
    if job_name is not None:
        request["TrainingJobName"] = job_name
    _fill_stopping_condition(request, max_run, max_wait, found)
    _fill_checkpoint(request, checkpoint_s3_uri, checkpoint_local_path)
    _fill_defaults(request)
    _cast_ints(request, _input_shape())
    found.extend(validate_spot_request(request, require_name=False))
    if found:
        raise SpotRequestValidationError(_first_per_field(found))
    return request


# --- deterministic job names ----------------------------------------------------------------------

_NAME_HASH_CHARS: Final = 8
_BASE_PREFIX_CHARS: Final = 40
_BASE_HASH_CHARS: Final = 12
_MAX_ATTEMPT: Final = 10**40  # so that prefix, hash and suffix always fit in 63 characters


def _name_part(text: str) -> str:
    """Letters and digits of ``text``, every other run of characters as one hyphen."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:chars]


def attempt_job_name(base: str, attempt: int) -> str:
    """The TrainingJobName of one attempt: ``<base>-a<attempt>``, always valid for SageMaker.

    A base that is not already a clean name (other characters, too long, empty) becomes a
    readable prefix plus a short hash of the whole base, so distinct bases keep distinct names.

    :param base: any text, e.g. from :func:`task_job_base_name`.
    :param attempt: the attempt number, from 1.
    :raises ValueError: if ``attempt`` is not an int in 1..10**40 - 1.
    """
    if not _is_int(attempt) or not 1 <= attempt < _MAX_ATTEMPT:
        raise ValueError(f"attempt must be an int in 1..10**40 - 1, not {attempt!r}")
    suffix = f"-a{attempt}"
    clean = _name_part(base)
    if clean and clean == base and len(clean) + len(suffix) <= JOB_NAME_MAX_CHARS:
        return clean + suffix
    keep = JOB_NAME_MAX_CHARS - len(suffix) - _NAME_HASH_CHARS - 1
    prefix = (clean or "job")[:keep].rstrip("-")
    return f"{prefix}-{_digest(base, _NAME_HASH_CHARS)}{suffix}"


def task_job_base_name(
    dag_id: str, task_id: str, run_id: str, map_index: int = -1, prefix: str | None = None
) -> str:
    """The base job name of one task instance: the same on every retry, distinct between runs.

    :param dag_id: the DAG id.
    :param task_id: the task id.
    :param run_id: the DAG run id.
    :param map_index: the map index of a mapped task (-1 when not mapped).
    :param prefix: a readable prefix instead of the task id.
    """
    readable = _name_part(prefix or task_id)[:_BASE_PREFIX_CHARS].rstrip("-") or "job"
    identity = json.dumps([dag_id, task_id, run_id, map_index])
    return f"{readable}-{_digest(identity, _BASE_HASH_CHARS)}"

"""The image registry: which images run, in which mode, and the refusal of the others."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_spot_provider.emulator.images import (
    ImageKind,
    UnknownImageError,
    decode_hp,
    resolve_image,
    resolve_image_uri,
)

SCRIPT_HPS = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"s3://b/k.tar.gz"'}


def _request(image: str | None, hps: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"TrainingInputMode": "File"}
    if image is not None:
        spec["TrainingImage"] = image
    return {"AlgorithmSpecification": spec, "HyperParameters": hps or {}}


@pytest.mark.parametrize(
    "uri",
    [
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-gpu-py310",
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/tensorflow-training:2.14-cpu-py310",
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        "763104351884.dkr.ecr.us-west-2.amazonaws.com/huggingface-pytorch-training:2.1-gpu",
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-training:2.0-cpu-py310",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training@sha256:" + "a" * 64,
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training",
    ],
)
def test_framework_images_run_in_script_mode(uri: str) -> None:
    assert resolve_image_uri(uri) is ImageKind.SCRIPT_MODE
    assert resolve_image(_request(uri, SCRIPT_HPS)) is ImageKind.SCRIPT_MODE


@pytest.mark.parametrize(
    "uri",
    [
        "spot-emulator/synthetic",
        "spot-emulator/synthetic:latest",
        "localhost:5000/spot-emulator/synthetic:v1",
        "spot-emulator/synthetic@sha256:" + "0" * 64,
    ],
)
def test_synthetic_image_any_tag(uri: str) -> None:
    assert resolve_image_uri(uri) is ImageKind.SYNTHETIC
    assert resolve_image(_request(uri)) is ImageKind.SYNTHETIC


@pytest.mark.parametrize(
    "uri",
    [
        "python:3.11",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/my-own-image:1",
        "76310435188.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1",
        "763104351884.dkr.ecr.us-east-1.example.com/pytorch-training:2.1",
        "spot-emulator/synthetic-2",
        "a/b/spot-emulator/synthetic",
        "spot-emulator/synthetic:bad tag",
        "",
    ],
)
def test_unknown_image_is_refused_with_the_known_list(uri: str) -> None:
    with pytest.raises(UnknownImageError) as err:
        resolve_image_uri(uri)
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert repr(uri) in message
    assert "spot-emulator/synthetic" in message
    assert "pytorch-training" in message
    assert "sagemaker-scikit-learn" in message


def test_request_without_training_image_is_refused() -> None:
    with pytest.raises(UnknownImageError, match="TrainingImage is required"):
        resolve_image({"AlgorithmSpecification": {"AlgorithmName": "arn:aws:sagemaker:algo"}})
    with pytest.raises(UnknownImageError):
        resolve_image({})


@pytest.mark.parametrize(
    ("hps", "missing"),
    [
        ({}, "sagemaker_program, sagemaker_submit_directory"),
        ({"sagemaker_program": "train.py"}, "sagemaker_submit_directory"),
        ({"sagemaker_submit_directory": "/src", "sagemaker_program": ""}, "sagemaker_program"),
    ],
)
def test_script_mode_needs_program_and_source(hps: dict[str, str], missing: str) -> None:
    uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    with pytest.raises(UnknownImageError) as err:
        resolve_image(_request(uri, hps))
    assert f"needs the hyperparameters {missing} (or AlgorithmSpecification.Container" in str(
        err.value
    )


def test_a_container_entrypoint_runs_without_script_mode_hyperparameters() -> None:
    # What SageMaker SDK v3's ModelTrainer sends: the image's entry point replaced.
    uri = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"
    request = _request(uri, {"epochs": "2"})
    request["AlgorithmSpecification"]["ContainerEntrypoint"] = ["/bin/bash"]
    request["AlgorithmSpecification"]["ContainerArguments"] = ["-c", "sm_train.sh"]
    assert resolve_image(request) is ImageKind.CONTAINER_ENTRYPOINT
    # The entry point wins over script mode's hyperparameters, as it replaces the toolkit.
    request["HyperParameters"] = SCRIPT_HPS
    assert resolve_image(request) is ImageKind.CONTAINER_ENTRYPOINT
    # An unknown image stays unknown, entry point or not.
    request["AlgorithmSpecification"]["TrainingImage"] = "busybox:latest"
    with pytest.raises(UnknownImageError, match="busybox"):
        resolve_image(request)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ('"train.py"', "train.py"),
        ("train.py", "train.py"),
        ("3", 3),
        ("0.5", 0.5),
        ("true", True),
        ('{"a": [1]}', {"a": [1]}),
        ("s3://b/k.tar.gz", "s3://b/k.tar.gz"),
        ("", ""),
    ],
)
def test_decode_hp_accepts_json_or_plain(raw: str, decoded: object) -> None:
    assert decode_hp(raw) == decoded

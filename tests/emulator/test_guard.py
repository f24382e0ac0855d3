"""A web page the developer visits, or a rebinding DNS name, cannot drive the backend: each
attack is refused, and the backend goes on serving its real clients."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.admin import TOKEN_HEADER, AdminApiError, AdminClient
from airflow_spot_provider.emulator.testing import synthetic_request, wait_for_secondary
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from tests.emulator.served import raw_request

EVIL = "https://evil.example"


def _no_cors(headers: dict[str, str]) -> None:
    assert not any(h.lower().startswith("access-control-") for h in headers), headers


def test_form_post_to_s3_from_a_foreign_origin_is_refused(
    emulator: SpotEmulator, s3: Any, bucket: str
) -> None:
    key = "code/sourcedir.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=b"the real code")
    form = (
        b'--x\r\nContent-Disposition: form-data; name="key"\r\n\r\n' + key.encode() + b"\r\n"
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nevil\r\n--x--\r\n'
    )
    url = emulator.s3_endpoint_url
    status, headers, body = raw_request(
        url, "POST", f"/{bucket}", form,
        {"Origin": EVIL, "Content-Type": "multipart/form-data; boundary=x"},
    )  # fmt: skip
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    _no_cors(headers)
    # A no-cors PUT from the page is refused too (it needs no answer to do harm).
    status, headers, _ = raw_request(
        url, "PUT", f"/{bucket}/{key}", b"evil", {"Origin": EVIL, "Content-Type": "text/plain"}
    )
    assert status == 403
    _no_cors(headers)
    # The preflight a page needs for anything else gets no CORS answer.
    status, headers, _ = raw_request(
        url, "OPTIONS", f"/{bucket}/{key}", b"",
        {"Origin": EVIL, "Access-Control-Request-Method": "PUT"},
    )  # fmt: skip
    assert status == 403
    _no_cors(headers)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"the real code"


def test_text_plain_post_to_admin_interrupt_is_refused(
    emulator: SpotEmulator, sm: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=5.0))
    wait_for_secondary(sm, job_name, S.TRAINING)
    path = f"/_emulator/jobs/{job_name}/interrupt"
    # What a page can send without a preflight: no token, text/plain.
    status, headers, body = raw_request(
        emulator.endpoint_url, "POST", path, b"{}", {"Content-Type": "text/plain", "Origin": EVIL}
    )
    assert status == 403, body
    _no_cors(headers)
    # Even with the token (which a page cannot know), a text/plain body is refused.
    status, _, body = raw_request(
        emulator.endpoint_url, "POST", path, b"{}",
        {"Content-Type": "text/plain", TOKEN_HEADER: emulator.admin_token},
    )  # fmt: skip
    assert status == 415, body
    assert json.loads(body)["error"] == "AdminError"
    assert admin.events(job=job_name, kind="admin_interrupt") == []
    assert sm.describe_training_job(TrainingJobName=job_name)["SecondaryStatus"] == S.TRAINING
    sm.stop_training_job(TrainingJobName=job_name)


@pytest.mark.parametrize("endpoint", ["sagemaker", "admin", "s3"])
def test_dns_rebinding_host_is_refused(emulator: SpotEmulator, endpoint: str, sm: Any) -> None:
    url = emulator.s3_endpoint_url if endpoint == "s3" else emulator.endpoint_url
    port = urlsplit(url).port
    if endpoint == "sagemaker":
        method, path, body = "POST", "/", b"{}"
        headers = {"X-Amz-Target": "SageMaker.ListTrainingJobs"}
    elif endpoint == "admin":
        method, path, body = "GET", "/_emulator/events", b""
        headers = {TOKEN_HEADER: emulator.admin_token}
    else:
        method, path, body, headers = "GET", "/", b"", {}
    headers["Content-Type"] = "application/x-amz-json-1.1"
    # The attacker's name resolves to 127.0.0.1; the browser sends it as Host.
    status, answer_headers, answer = raw_request(
        url, method, path, body, {**headers, "Host": f"rebind.evil.example:{port}"}
    )
    assert status == 403, answer
    assert b"rebind.evil.example" in answer  # the answer names what was refused
    _no_cors(answer_headers)
    # The same request under a loopback name is served.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        status, _, answer = raw_request(url, method, path, body, {**headers, "Host": host})
        assert status == 200, answer
    assert "TrainingJobSummaries" in sm.list_training_jobs()  # still serving


def test_admin_without_token_is_refused(emulator: SpotEmulator, admin: AdminClient) -> None:
    for token in ("", "not-the-token-of-this-run"):
        with pytest.raises(AdminApiError) as refused:
            AdminClient(emulator.endpoint_url, token=token).set_capacity("ml.guard.test", False)
        assert refused.value.status == 403
        assert "X-Spot-Emulator-Token" in refused.value.message
    assert [e for e in admin.events(kind="capacity") if e["instance_type"] == "ml.guard.test"] == []
    assert admin.health()["status"] == "ok"  # liveness needs no token; still serving
    assert (emulator.config.token_path.read_text().strip()) == emulator.admin_token
    assert emulator.config.token_path.stat().st_mode & 0o077 == 0  # only its owner reads it

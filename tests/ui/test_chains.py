"""What the view shows of a chain, from a task's return value (pure functions), and the plugin."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest

from airflow_spot_provider.lifecycle import SpotJobReport
from airflow_spot_provider.links import SpotTrainingViewLink
from airflow_spot_provider.plugins import SpotTrainingPlugin
from airflow_spot_provider.plugins.chains import (
    ChainKey,
    StoredChain,
    chain_cost,
    chain_detail,
    chain_row,
    console_url,
    is_chain_result,
    parse_prices,
    region_of,
    s3_console_url,
    task_log_url,
    view_url,
)
from airflow_spot_provider.summary import summarize_attempts
from tests.seed_lifecycles import describe_response

KEY = ChainKey("churn", "manual__2026-01-01T00:00:00+00:00", "train")
ARN = "arn:aws:sagemaker:eu-west-1:123456789012:training-job/seed-a1"


def _result() -> dict[str, object]:
    reports = [
        SpotJobReport.from_describe(describe_response("two-interruptions-max-wait")),
        SpotJobReport.from_describe(describe_response("one-interruption")),
    ]
    summary = summarize_attempts(reports)
    return json.loads(
        json.dumps(
            {
                "job_arn": ARN,
                "outcome": "COMPLETED",
                "checkpoint_s3_uri": "s3://bucket/checkpoints/churn/",
                **summary,
            }
        )
    )


def test_row_has_the_figures_and_links() -> None:
    row = chain_row(StoredChain(KEY, _result()), {})
    assert (row["attempts"], row["interruptions"], row["outcome"]) == (2, 3, "COMPLETED")
    assert (row["training_seconds"], row["billable_seconds"]) == (1030, 315)
    assert row["cost"] is None  # no prices configured
    assert row["links"]["task_log"] == (
        "/dags/churn/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/train"
    )
    assert row["links"]["checkpoints"] == (
        "https://s3.console.aws.amazon.com/s3/buckets/bucket?prefix=checkpoints%2Fchurn%2F"
    )


def test_cost_bills_billable_seconds_at_the_on_demand_price() -> None:
    assert chain_cost(_result(), {"ml.m5.xlarge": 3.6}) == {"cost": 0.315, "on_demand_cost": 1.03}
    assert chain_cost(_result(), {"ml.p3.2xlarge": 3.6}) is None  # no price for the type


def test_detail_draws_each_attempt_with_its_console_link() -> None:
    detail = chain_detail(StoredChain(KEY, _result()), {})
    first, second = detail["attempt_list"]
    assert first["outcome"] == "MAX_WAIT_EXCEEDED"
    assert [s["phase"] for s in first["segments"]][-2:] == ["training", "stopping"]
    assert second["console"] == (
        "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/seed-one-interruption"
    )
    assert "transitions" not in first  # the segments replace them


def test_links_need_a_real_arn_and_an_s3_uri() -> None:
    assert region_of(ARN) == ("aws", "eu-west-1")
    assert region_of("not-an-arn") is None
    assert console_url(None, "job") is None
    assert s3_console_url("gs://bucket/x") is None
    mapped = ChainKey("d", "r", "t", 3)
    assert task_log_url(mapped) == "/dags/d/runs/r/tasks/t/mapped/3"
    assert view_url(mapped, "https://af.example/") == (
        "https://af.example/spot-training/?dag_id=d&run_id=r&task_id=t&map_index=3"
    )


@pytest.mark.parametrize(
    "text", ["[1]", '{"ml.m5.xlarge": "cheap"}', '{"ml.m5.xlarge": -1}', "{not json", '{"a": true}']
)
def test_bad_prices_name_the_option_the_value_and_the_rule(text: str) -> None:
    rule = r"\[spot_training\] hourly_prices=.*must be a JSON object"
    with pytest.raises(ValueError, match=rule):
        parse_prices(text)


def test_prices_parse() -> None:
    assert parse_prices("") == {}
    assert parse_prices('{"ml.m5.xlarge": 0.23, "ml.p3.2xlarge": 4}') == {
        "ml.m5.xlarge": 0.23,
        "ml.p3.2xlarge": 4.0,
    }


def test_only_chain_summaries_are_chains() -> None:
    assert is_chain_result(_result())
    assert not is_chain_result({"job_name": "x", "outcome": None})  # a launch-only result
    assert not is_chain_result("text")


def test_task_link_opens_the_chain_in_the_view() -> None:
    class Key:
        dag_id, run_id, task_id, map_index = KEY.dag_id, KEY.run_id, KEY.task_id, None

    assert SpotTrainingViewLink().get_link(None, ti_key=Key()) == view_url(KEY)


def test_plugin_is_registered_through_its_entry_point() -> None:
    (point,) = [e for e in entry_points(group="airflow.plugins") if e.name == "spot_training"]
    assert point.load() is SpotTrainingPlugin
    (view,) = SpotTrainingPlugin.external_views
    (app,) = SpotTrainingPlugin.fastapi_apps
    assert view["href"] == app["url_prefix"] + "/"

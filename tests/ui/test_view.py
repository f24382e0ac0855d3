"""The Spot training view in a real api-server, opened in headless Chromium.

Real chains run with ``dag.test()`` against the embedded backend: one that never gets capacity
and is given up, one of two attempts (attempt 1 is interrupted, then stopped at MaxWait while
spot capacity is away; attempt 2 completes), with
Airflow's StatsD client sending to a UDP listener of the test. Then ``airflow api-server`` starts
on that DB, and Chromium (Debian's package, through selenium) opens the view.

``SPOT_UI_SCREENSHOT=docs/spot-training-view.png`` also writes the screenshot there (``make
screenshot``, for the README).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from sqlalchemy import select

from airflow_spot_provider import metrics
from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.chaos import CapacityGap
from airflow_spot_provider.plugins.chains import ChainKey, view_url
from airflow_spot_provider.standalone import (
    airflow_env,
    free_port,
    start_api_server,
    stop,
    wait_until_up,
)
from tests.conftest import E2E_DAGS_FOLDER
from tests.e2e.conftest import BUCKET, synthetic_config
from tests.test_metrics import StatsdListener, statsd

pytestmark = pytest.mark.e2e
__all__ = ["statsd"]

INSTANCE = "ml.g4dn.xlarge"
PRICE = 0.736  # the view's cost column: on-demand USD per hour of INSTANCE (configured)


def _xcom(key: ChainKey, xcom_key: str) -> Any:
    with create_session() as session:
        row = session.scalar(
            select(XComModel).where(
                XComModel.dag_id == key.dag_id,
                XComModel.run_id == key.run_id,
                XComModel.task_id == key.task_id,
                XComModel.key == xcom_key,
            )
        )
        assert row is not None, f"no XCom {xcom_key} of {key}"
        return XComModel.deserialize_value(row)


@pytest.fixture
def browser() -> tuple[str, str]:
    """Chromium and its driver, or skip with the reason (before any chain runs)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "Chromium or chromedriver is missing: run `make chromium` (apt-get install chromium "
            "chromium-driver, as root) to run the browser test"
        )
    return browser, driver


def run_two_attempt_chain(emulator: SpotEmulator) -> Any:
    """Run a real two-attempt chain with ``dag.test()``; its DagRun.

    :param emulator: the embedded backend that ``aws_default`` points at.
    """
    name = f"v{uuid.uuid4().hex[:8]}"
    config = synthetic_config(2.0)
    config["ResourceConfig"]["InstanceType"] = INSTANCE
    emulator.admin.load_scenario(
        [{"interrupt": {"job": f"{name}-*a1", "at_training_second": 0.5}}], replace=True
    )
    conf = {
        "name": name,
        "config": config,
        "checkpoint_s3_uri": f"s3://{BUCKET}/checkpoints/{name}/",
        "max_run": 6,
        "max_wait": 7,
    }
    dag = DagBag(dag_folder=str(E2E_DAGS_FOLDER)).get_dag("e2e_retry_worker")
    assert dag is not None
    with CapacityGap(emulator, INSTANCE, name):  # until attempt 1 has hit MaxWait
        run = dag.test(run_conf=conf, logical_date=datetime.now(UTC))
    assert run.state == DagRunState.SUCCESS
    return run


def run_given_up_chain(emulator: SpotEmulator) -> Any:
    """Run a real chain that never gets capacity, with a budget of one attempt; its DagRun.

    :param emulator: the embedded backend that ``aws_default`` points at.
    """
    name = f"g{uuid.uuid4().hex[:8]}"
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.c5.9xlarge"
    scenario = [{"no_capacity": {"instance_type": "ml.c5.9xlarge"}}]
    emulator.admin.load_scenario(scenario, replace=True)
    conf = {"name": name, "config": config, "max_run": 2, "max_wait": 2}
    dag = DagBag(dag_folder=str(E2E_DAGS_FOLDER)).get_dag("e2e_once_worker")
    assert dag is not None
    run = dag.test(run_conf=conf, logical_date=datetime.now(UTC))
    assert run.state == DagRunState.FAILED
    return run


@pytest.fixture
def chain_run(emulator: SpotEmulator, statsd: StatsdListener) -> tuple[Any, Any, list[str]]:
    """Real chains run by ``dag.test()``: given up, then two attempts; the runs, StatsD lines."""
    given_up = run_given_up_chain(emulator)
    return given_up, run_two_attempt_chain(emulator), statsd.lines()


@pytest.fixture
def api_server(chain_run: Any, tmp_path: Path) -> Iterator[str]:
    """``airflow api-server`` on a free port, on the DB that holds the chain."""
    port = free_port()
    env = airflow_env(Path(os.environ["AIRFLOW_HOME"]), port)
    env["AIRFLOW__SPOT_TRAINING__HOURLY_PRICES"] = json.dumps({INSTANCE: PRICE})
    log = tmp_path / "api-server.log"
    process = start_api_server(env, port, log)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/v2/monitor/health", process)
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        print(log.read_text()[-5000:])
        raise
    finally:
        stop([process])


def _wait_ready(driver: Any) -> None:
    """Wait until the view's page has loaded its data (or shown an error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready")
    )
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", (
        driver.find_element(By.ID, "error").text
    )


def _rows(driver: Any) -> list[dict[str, Any]]:
    """The list's rows: some cells' text and the run id."""
    from selenium.webdriver.common.by import By

    columns = ("attempts", "outcome", "cost")
    return [
        {c: r.find_element(By.CSS_SELECTOR, f".{c}").text for c in columns}
        | {"run_id": r.get_attribute("data-run-id")}
        for r in driver.find_elements(By.CSS_SELECTOR, "tr.chain-row")
    ]


def _open_view(
    browser: tuple[str, str], url: str, in_airflow_ui: str, screenshot: Path
) -> dict[str, Any]:
    """Open the view in headless Chromium: what it shows; then a screenshot of it in the UI.

    :param browser: Chromium and chromedriver.
    :param url: the view's page on one chain.
    :param in_airflow_ui: the Airflow UI's page that frames the view (its nav entry).
    :param screenshot: where to save the screenshot.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,600"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(browser[1]), options=options)
    try:
        driver.get(url)
        _wait_ready(driver)
        rows = _rows(driver)
        attempts = [
            {
                "outcome": a.get_attribute("data-outcome"),
                "phases": [
                    s.get_attribute("data-phase") for s in a.find_elements(By.CSS_SELECTOR, ".seg")
                ],
                "console": a.find_element(By.CSS_SELECTOR, ".label a").get_attribute("href"),
            }
            for a in driver.find_elements(By.CSS_SELECTOR, "#attempts .attempt")
        ]
        # The same view inside the Airflow UI, framed under its nav entry.
        driver.get(in_airflow_ui)
        frame = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "iframe"))
        driver.switch_to.frame(frame)
        _wait_ready(driver)
        all_rows = _rows(driver)  # no filter: every DAG's chains
        driver.switch_to.default_content()
        driver.save_screenshot(str(screenshot))
        return {"rows": rows, "attempts": attempts, "all_rows": all_rows}
    finally:
        driver.quit()


def _api(url: str) -> Any:
    with urllib.request.urlopen(url) as response:
        return json.load(response)


def test_view_shows_the_chain_and_its_timeline(
    browser: tuple[str, str],
    chain_run: tuple[Any, Any, list[str]],
    api_server: str,
    tmp_path: Path,
) -> None:
    given_up, run, statsd_lines = chain_run
    # The plugin is registered with the api-server: the UI lists the view.
    plugins = _api(f"{api_server}/api/v2/plugins")["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "spot_training"]
    # The view's API filters by DAG and by when the chain ended.
    chains = f"{api_server}/spot-training/api/chains"
    listed = _api(f"{chains}?dag_id={run.dag_id}")["chains"]
    assert {c["dag_id"] for c in listed} == {run.dag_id}
    assert run.run_id in {c["run_id"] for c in listed}
    assert _api(f"{chains}?since=2999-01-01T00:00:00Z")["chains"] == []
    assert _api(f"{chains}?until=2000-01-01T00:00:00Z")["chains"] == []
    assert plugin["external_views"][0]["href"] == "/spot-training/"

    # The task's extra link leads to its chain in the view (no base_url set: a path).
    key = ChainKey(run.dag_id, run.run_id, "train")
    link = _xcom(key, "_link_SpotTrainingViewLink")
    assert link == view_url(key)
    screenshot = tmp_path / "spot-training-view.png"
    url = f"{api_server}{link}"
    try:
        shown = _open_view(browser, url, f"{api_server}/plugin/spot-training", screenshot)
    except Exception:
        print((tmp_path / "api-server.log").read_text()[-5000:])
        raise
    assert screenshot.stat().st_size > 10_000
    if target := os.environ.get("SPOT_UI_SCREENSHOT"):
        shutil.copyfile(screenshot, target)

    row = next(r for r in shown["rows"] if r["run_id"] == run.run_id)
    assert row["attempts"] == "2"
    assert row["outcome"] == "COMPLETED"
    assert row["cost"].startswith("$")
    assert given_up.run_id not in {r["run_id"] for r in shown["rows"]}  # another DAG
    # Unfiltered, the view also lists the chain that was given up, and how it ended.
    failed = next(r for r in shown["all_rows"] if r["run_id"] == given_up.run_id)
    assert (failed["attempts"], failed["outcome"]) == ("1", "MAX_WAIT_EXCEEDED (given up)")
    first, second = shown["attempts"]
    assert first["outcome"] == "MAX_WAIT_EXCEEDED"
    assert first["phases"][:4] == ["waiting", "downloading", "training", "interrupted"]
    assert first["phases"][-1] == "stopping"
    assert second["outcome"] == "COMPLETED"
    assert second["phases"] == ["waiting", "downloading", "training", "uploading"]
    assert "#/jobs/" in first["console"]

    # The same real chain sent its metrics through Airflow's StatsD client.
    sent = {line.split(":")[0] for line in statsd_lines}
    tags = f"dag_id={run.dag_id},task_id=train"
    assert f"airflow.{metrics.ATTEMPTS},{tags}" in sent
    assert f"airflow.{metrics.RESUBMISSIONS},{tags},reason=MAX_WAIT_EXCEEDED" in sent
    assert f"airflow.{metrics.MAX_WAIT_EXCEEDED},{tags}" in sent

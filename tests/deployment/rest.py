"""The deployment's public REST API (``/api/v2``), used as the UI uses it.

A token comes from the simple auth manager's ``GET /auth/token`` (every user is an admin in
the deployment under test). DAG runs are triggered, task instances read and marked, and task
logs read through the same endpoints the UI calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.deployment.deployment import wait_for

DB_ERROR_TRIES = 5
FINISHED_RUN_STATES = frozenset({"success", "failed"})
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
MAX_PAGE = 100  # [api] maximum_page_limit's default


@dataclass(frozen=True)
class Run:
    """One DAG run of the deployment.

    :param dag_id: the DAG.
    :param run_id: the run.
    """

    dag_id: str
    run_id: str

    def task_path(self, task_id: str) -> str:
        """The REST path of one of its task instances.

        :param task_id: the task.
        """
        return f"/api/v2/dags/{self.dag_id}/dagRuns/{self.run_id}/taskInstances/{task_id}"


class AirflowApi:
    """A REST client of one deployment.

    :param base_url: the api-server's URL (``http://127.0.0.1:PORT``).
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=30)
        self._token: str | None = None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._token is None:
            response = self._http.get("/auth/token")
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        for _ in range(DB_ERROR_TRIES):
            response = self._http.request(method, path, headers=headers, **kwargs)
            # SQLite allows one writer: a request that meets a busy database is rolled back
            # and answered with "Database error"; the UI's user would click again.
            if response.status_code != 500 or "Database error" not in response.text:
                break
            time.sleep(1.0)
        if response.is_error:
            raise AssertionError(
                f"{method} {path} -> HTTP {response.status_code}: {response.text[:500]}"
            )
        return response

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``GET`` a path of the REST API and return its JSON body.

        :param path: e.g. ``/api/v2/jobs``.
        :param params: the query.
        """
        body: dict[str, Any] = self._request("GET", path, params=params).json()
        return body

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed these DAGs (and report import errors).

        :param dag_ids: the DAGs.
        :param timeout: seconds.
        """

        def parsed() -> bool:
            errors = self._request("GET", "/api/v2/importErrors").json()["import_errors"]
            if errors:
                raise AssertionError(f"DAG import errors: {errors}")
            found = self._request("GET", "/api/v2/dags", params={"limit": 100}).json()["dags"]
            return set(dag_ids) <= {dag["dag_id"] for dag in found}

        wait_for(parsed, timeout, f"the DAGs {dag_ids} to be parsed")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> Run:
        """Trigger a DAG run with ``conf``, as the UI's "Trigger DAG" does.

        :param dag_id: the DAG.
        :param conf: the run's conf.
        """
        body = {"logical_date": None, "conf": conf}
        run = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body).json()
        return Run(dag_id, str(run["dag_run_id"]))

    def run_state(self, run: Run) -> str:
        """The DAG run's state.

        :param run: the run.
        """
        path = f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}"
        return str(self._request("GET", path).json()["state"])

    def task_instance(self, run: Run, task_id: str = "train") -> dict[str, Any]:
        """The task instance as ``GET .../taskInstances/{task_id}`` returns it.

        :param run: the run.
        :param task_id: the task.
        """
        ti: dict[str, Any] = self._request("GET", run.task_path(task_id)).json()
        return ti

    def wait_task(
        self, run: Run, states: set[str], task_id: str = "train", timeout: float = 180.0
    ) -> dict[str, Any]:
        """Wait until the task instance is in one of ``states`` and return it.

        :param run: the run.
        :param states: e.g. ``{"deferred"}``.
        :param task_id: the task.
        :param timeout: seconds.
        """

        def reached() -> dict[str, Any] | None:
            ti = self.task_instance(run, task_id)
            return ti if ti["state"] in states else None

        ti: dict[str, Any] = wait_for(reached, timeout, f"{run.dag_id}.{task_id} in {states}")
        return ti

    def wait_run(self, run: Run, timeout: float = 240.0) -> str:
        """Wait until the DAG run has finished and return its state.

        :param run: the run.
        :param timeout: seconds.
        """

        def finished() -> str | None:
            state = self.run_state(run)
            return state if state in FINISHED_RUN_STATES else None

        state: str = wait_for(finished, timeout, f"the run {run} to finish", every=1.0)
        return state

    def mark_failed(self, run: Run, task_id: str = "train") -> None:
        """Mark a task instance failed, as the UI's "Mark as failed" does.

        :param run: the run.
        :param task_id: the task.
        """
        self._request("PATCH", run.task_path(task_id), json={"new_state": "failed"})

    def mapped_task_instances(self, run: Run, task_id: str) -> list[dict[str, Any]]:
        """Every task instance of a mapped task (``GET .../{task_id}/listMapped``, all pages).

        :param run: the run.
        :param task_id: the mapped task.
        """
        found: list[dict[str, Any]] = []
        while True:
            params = {"limit": MAX_PAGE, "offset": len(found), "order_by": "map_index"}
            page = self._request("GET", f"{run.task_path(task_id)}/listMapped", params=params)
            instances = page.json()["task_instances"]
            found += instances
            if len(instances) < MAX_PAGE:
                return found

    def log(
        self, run: Run, try_number: int, task_id: str = "train", map_index: int = -1
    ) -> list[dict[str, Any]]:
        """A try's whole log as the UI shows it: the worker's and the triggerer's files merged.

        :param run: the run.
        :param try_number: the try.
        :param task_id: the task.
        :param map_index: the task instance's map index (-1: not mapped).
        """
        path = f"{run.task_path(task_id)}/logs/{try_number}"
        params: dict[str, Any] = {"full_content": "true", "map_index": map_index}
        entries: list[dict[str, Any]] = []
        while True:
            page = self._request(
                "GET", path, params=params, headers={"Accept": "application/json"}
            ).json()
            entries.extend(e for e in page["content"] if isinstance(e, dict))
            token = page.get("continuation_token")
            if not token:
                return entries
            params["token"] = token

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

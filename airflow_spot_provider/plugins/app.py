"""The Spot training view's FastAPI app, mounted by the api-server under ``/spot-training``.

``GET /`` is the page; ``GET /api/chains`` lists recent chains and ``GET /api/chain`` gives
one chain's attempts and timelines. Both read the tasks' return values through Airflow's DB
session, for the DAGs the caller may read (Airflow's auth manager), and never call AWS.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.configuration import conf
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

from airflow_spot_provider.plugins.chains import ChainKey, chain_detail, chain_row, parse_prices
from airflow_spot_provider.plugins.store import ChainFilter, find_chains


def _readable_dag_ids(user: Any) -> set[str]:
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _prices() -> dict[str, float]:
    return parse_prices(conf.get("spot_training", "hourly_prices", fallback=""))


def create_app() -> FastAPI:
    """The view's app (the api-server mounts it; auth comes from Airflow's dependencies)."""
    app = FastAPI(title="Spot training", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page(user: GetUserDep) -> str:
        return resources.files(__package__).joinpath("view.html").read_text()

    @app.get("/api/chains")
    def chains(
        user: GetUserDep,
        session: SessionDep,
        dag_id: Annotated[str | None, Query()] = None,
        since: Annotated[datetime | None, Query()] = None,
        until: Annotated[datetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        prices = _prices()
        where = ChainFilter(_readable_dag_ids(user), dag_id or None, since, until, limit=limit)
        rows = [chain_row(c, prices) for c in find_chains(session, where)]
        return {"chains": rows, "prices_configured": bool(prices)}

    @app.get("/api/chain")
    def chain(
        user: GetUserDep,
        session: SessionDep,
        key: Annotated[ChainKey, Depends()],
    ) -> dict[str, Any]:
        where = ChainFilter(_readable_dag_ids(user), key=key, limit=1)
        found = next(find_chains(session, where), None)
        if found is None:
            raise HTTPException(404, f"no spot chain for {key}")
        return chain_detail(found, _prices())

    return app

"""The provider's Airflow plugin: the "Spot training" view in the Airflow UI.

Registered through the ``airflow.plugins`` entry point (``pyproject.toml``), which every Airflow
component reads; the api-server mounts the view's app under ``/spot-training`` and the UI lists
the view under Browse, shown in a frame at ``/plugin/spot-training``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.sdk.plugins_manager import AirflowPlugin

from airflow_spot_provider.plugins.chains import VIEW_PREFIX

_Asgi = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


class LazyViewApp:
    """An ASGI app that builds the view's FastAPI app on its first request.

    Every component loads plugins; only the api-server serves them, so the FastAPI app and
    Airflow's API modules it needs are imported there, on first use.
    """

    def __init__(self) -> None:
        self._app: _Asgi | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one ASGI call.

        :param scope: the ASGI scope.
        :param receive: the ASGI receive channel.
        :param send: the ASGI send channel.
        """
        if self._app is None:
            from airflow_spot_provider.plugins.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class SpotTrainingPlugin(AirflowPlugin):
    """The Spot training view: recent spot chains across DAGs and each attempt's timeline."""

    name = "spot_training"
    fastapi_apps = [{"app": LazyViewApp(), "url_prefix": VIEW_PREFIX, "name": "Spot training"}]
    external_views = [
        {
            "name": "Spot training",
            "href": f"{VIEW_PREFIX}/",
            "url_route": "spot-training",
            "destination": "nav",
            "category": "browse",
        }
    ]

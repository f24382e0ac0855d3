"""The spot chains in Airflow's metadata DB: the return values of the spot training tasks.

Read through the api-server's own session; a chain is a task instance of one of this
provider's spot classes whose ``return_value`` XCom (completed) or ``spot_chain_given_up`` XCom
(given up by the retry policy) is a chain summary.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_spot_provider.chain_end import GIVEN_UP_XCOM_KEY
from airflow_spot_provider.plugins.chains import ChainKey, StoredChain, is_chain_result

# ``TaskInstance.operator`` of the tasks that return a chain summary.
SPOT_TASK_TYPES = ("SageMakerSpotTrainingOperator", "SageMakerSpotTrainingSensor")
# A completed chain's summary is the return value; a given-up one's has its own key.
CHAIN_XCOM_KEYS = ("return_value", GIVEN_UP_XCOM_KEY)


@dataclass(frozen=True)
class ChainFilter:
    """Which chains to list.

    :param dag_ids: the DAGs the user may read (always applied).
    :param dag_id: one DAG only.
    :param since: ended at or after.
    :param until: ended before.
    :param key: one chain only.
    :param limit: at most this many, newest first.
    """

    dag_ids: Collection[str]
    dag_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    key: ChainKey | None = None
    limit: int = 100


def _select(where: ChainFilter) -> Any:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, select

    query = (
        select(XComModel)
        .join(
            TaskInstance,
            and_(
                TaskInstance.dag_id == XComModel.dag_id,
                TaskInstance.run_id == XComModel.run_id,
                TaskInstance.task_id == XComModel.task_id,
                TaskInstance.map_index == XComModel.map_index,
            ),
        )
        .where(XComModel.key.in_(CHAIN_XCOM_KEYS), TaskInstance.operator.in_(SPOT_TASK_TYPES))
        .where(XComModel.dag_id.in_(list(where.dag_ids)))
    )
    if where.dag_id:
        query = query.where(XComModel.dag_id == where.dag_id)
    if where.since:
        query = query.where(XComModel.timestamp >= where.since)
    if where.until:
        query = query.where(XComModel.timestamp < where.until)
    if where.key:
        query = query.where(
            XComModel.dag_id == where.key.dag_id,
            XComModel.run_id == where.key.run_id,
            XComModel.task_id == where.key.task_id,
            XComModel.map_index == where.key.map_index,
        )
    return query.order_by(XComModel.timestamp.desc()).limit(where.limit)


def find_chains(session: Any, where: ChainFilter) -> Iterator[StoredChain]:
    """The chains that match, newest first.

    :param session: a SQLAlchemy session on Airflow's DB.
    :param where: the filter.
    """
    from airflow.models.xcom import XComModel

    for row in session.scalars(_select(where)):
        value = XComModel.deserialize_value(row)
        if is_chain_result(value):
            key = ChainKey(row.dag_id, row.run_id, row.task_id, row.map_index)
            yield StoredChain(key, value, row.timestamp)

"""Blocking requests to Airflow's supervisor, one at a time in this process.

Airflow's in-process supervisor comms (``dag.test()``, the tests) are not thread-safe: two
requests at once from two threads take each other's answers, or fail ("cannot import name
'SUPERVISOR_COMMS'": one call unsets it while the other runs). Every blocking request of this
provider (the Variables of :mod:`~airflow_spot_provider.position_store`, the kill guard's
``GetTaskStates``) goes through :func:`one_at_a_time`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

_LOCK = threading.Lock()


def one_at_a_time(call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Make one blocking supervisor request, after any other one of this process has ended.

    :param call: the request, e.g. ``Variable.get`` or ``SUPERVISOR_COMMS.send``.
    :param args: its positional arguments.
    :param kwargs: its keyword arguments.
    """
    with _LOCK:
        return call(*args, **kwargs)

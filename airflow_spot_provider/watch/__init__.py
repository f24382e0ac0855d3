"""The shared watch: one per (AWS connection, region) per event loop, for all triggers (and for
a worker that follows many jobs, :func:`~airflow_spot_provider.watch.following.follow_jobs`).

- :mod:`~airflow_spot_provider.watch.book`: the pure bookkeeping (what changed, what to describe,
  the watermark, the sweep, where the log group's read starts) and the tuning;
- :mod:`~airflow_spot_provider.watch.calls`: the List walk and the log group's reads as call
  generators;
- :mod:`~airflow_spot_provider.watch.following`: a subscriber's news taken and logged; many jobs
  followed at once;
- :mod:`~airflow_spot_provider.watch.loop`: the async loop of one watch;
- :mod:`~airflow_spot_provider.watch.subscription`: what a trigger asks for and the news it gets;
- :mod:`~airflow_spot_provider.watch.registry`: one loop's watches, subscribe / unsubscribe;
- :mod:`~airflow_spot_provider.watch.saver`: the positions, loaded and saved in batches, off loop;
- :mod:`~airflow_spot_provider.watch.heap`: the long-lived heap, frozen out of full collections.
"""

from airflow_spot_provider.watch.registry import watching
from airflow_spot_provider.watch.subscription import News, Subscription

__all__ = ["News", "Subscription", "watching"]

"""Following one training job: the pure step, and the poll loop built on it.

:func:`follow_step` is the one place that decides what is new in a job's description: given the
report and a :class:`~airflow_spot_provider.position.Position` it returns the transitions to
log, the outcome and the new position, without I/O. :func:`follow_job` polls a job to its end
with it (describe, log what is new, relay CloudWatch lines, sleep), as a generator of effects
that the worker carries out (:class:`~airflow_spot_provider.hooks.jobs.SyncJobs`). The trigger
takes the same steps on the descriptions and lines that the triggerer's shared watch
(:mod:`airflow_spot_provider.watch`) hands it: :func:`follow_step`, :func:`is_done`, and
:func:`live_line` / :func:`relay_line` for what it writes.

How transitions reach the task log (what a user reads in the UI, task log and trigger logs
merged): a transition is written as ``<job>: <Status> at <start> - <message>``
(:func:`transition_line`) by the task's own process only, once, into the task log, which the
task's process appends to across deferrals. A deferred task's worker writes, when it resumes, the
transitions of the ended attempt that it had not written before deferring. The trigger writes
``[live] <job> is <Status> ...`` lines (:func:`live_line`) into its own log file: progress to
watch while deferred, which the triggerer may overwrite (it opens a trigger's file with "wb", one
file per triggerer job id, so a second deferral of the same try on the same triggerer replaces
the first's, while a restarted triggerer writes a new file). So the task log holds each
transition of every attempt exactly once, whatever the triggerer did with its files; the
training job's CloudWatch lines relayed by a trigger (``print_log``) are in that trigger's file
only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from airflow_spot_provider.hooks.job_calls import Ops, Say, Sleep, describe_job, new_log_lines
from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport, Transition
from airflow_spot_provider.position import Position


@dataclass(frozen=True)
class Followed:
    """What one look at a job found.

    :param transitions: the transitions to log (new ones, or the open one whose message changed).
    :param outcome: how the job ended; None while it runs.
    :param position: the position once they are logged.
    """

    transitions: tuple[Transition, ...]
    outcome: JobOutcome | None
    position: Position


def follow_step(report: SpotJobReport, position: Position) -> Followed:
    """What is new in a job's report since a position. Pure.

    :param report: the job's latest report.
    :param position: what has been logged of the job.
    """
    count = len(report.transitions)
    if count < position.transitions or not report.transitions:
        return Followed((), report.outcome, position)  # a stale description: nothing new
    new = report.transitions[position.transitions :]
    revision = 0 if new else position.revision
    if not new and report.transitions[-1].message != position.message:
        new, revision = report.transitions[-1:], revision + 1  # the open one's message changed
    message = report.transitions[-1].message
    after = replace(position, transitions=count, revision=revision, message=message)
    return Followed(tuple(new), report.outcome, after)


def transition_line(job_name: str, transition: Transition) -> str:
    """The task log's line for a transition: job, status, start time, SageMaker's message.

    :param job_name: the job.
    :param transition: the transition.
    """
    return f"{job_name}: {transition.status.value} at {_since(transition)}"


def live_line(job_name: str, transition: Transition) -> str:
    """A trigger's progress line for a transition (the task log gets :func:`transition_line`).

    :param job_name: the job.
    :param transition: the transition.
    """
    return f"[live] {job_name} is {transition.status.value} since {_since(transition)}"


def relay_line(stream: str, text: str) -> str:
    """A relayed CloudWatch line, prefixed with its host (``[algo-1-<epoch>] <text>``).

    :param stream: the stream (``<job>/algo-1-<epoch>``).
    :param text: the line.
    """
    return f"[{stream.rsplit('/', 1)[-1]}] {text}"


def is_done(
    step: Followed,
    describe: dict[str, Any],
    stop_when: Callable[[dict[str, Any]], bool] | None,
) -> bool:
    """Whether following ends after a step: the job ended, or ``stop_when`` says so.

    :param step: the step just taken.
    :param describe: the description it was taken on (the latest one).
    :param stop_when: the early exit, if any.
    """
    return step.outcome is not None or (stop_when is not None and stop_when(describe))


def _since(transition: Transition) -> str:
    """``<start> - <message>``, or ``-`` for an unknown start, without a message if it has none."""
    start = transition.start.isoformat() if transition.start else "-"
    return f"{start} - {transition.message}" if transition.message else start


def follow_job(
    position: Position,
    *,
    poll_interval: float,
    print_log: bool,
    wait_first: bool,
    line: Callable[[str, Transition], str] = transition_line,
    stop_when: Callable[[dict[str, Any]], bool] | None = None,
) -> Ops[tuple[dict[str, Any], Position]]:
    """Poll a job until it ends (or ``stop_when`` says so); its last description and position.

    :param position: where to start (the job is ``position.job_name``).
    :param poll_interval: seconds between two describes.
    :param print_log: relay the job's CloudWatch lines.
    :param wait_first: wait one interval before the first describe (a job just created): one
        DescribeTrainingJob per poll interval, not one more per attempt.
    :param line: how a transition is written (:func:`transition_line` or :func:`live_line`).
    :param stop_when: return early, with the running job's description, when this says so
        (:func:`~airflow_spot_provider.next_action.switch_due`: the policy wants the job
        stopped); None: only the job's end returns.
    """
    job_name = position.job_name
    if wait_first and position.transitions == 0:
        yield Sleep(poll_interval)
    while True:
        describe = yield from describe_job(job_name)
        step = follow_step(SpotJobReport.from_describe(describe), position)
        for transition in step.transitions:
            yield Say(line(job_name, transition))
        position = step.position
        if print_log:
            lines, position = yield from new_log_lines(position)
            for stream, text in lines:
                yield Say(relay_line(stream, text))
        if is_done(step, describe, stop_when):
            return describe, position
        yield Sleep(poll_interval)

"""Which of the service's scheduled jobs are under way, through APScheduler's public API.

APScheduler 3 counts a job's running instances in its executors (what ``max_instances`` is
checked against) but does not publish the count. ``JobsUnderWay`` keeps the same count from
the scheduler's public job events: a run is under way from its submission (``EVENT_JOB_SUBMITTED``,
sent once the executor has accepted it) until it has ended (``EVENT_JOB_EXECUTED`` or
``EVENT_JOB_ERROR``, a cancelled run included). The admin endpoint reads it to say a run is
already under way; the wiring waits on it when the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.schedulers.base import BaseScheduler


class JobsUnderWay:
    """The runs under way of each job of one scheduler (``attach`` it first)."""

    def __init__(self) -> None:
        self._runs: dict[str, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def attach(self, scheduler: BaseScheduler) -> None:
        scheduler.add_listener(self._on_event,
                               EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_SUBMITTED:
            self._runs[event.job_id] = self._runs.get(event.job_id, 0) + 1
            self._idle.clear()
            return
        left = self._runs.get(event.job_id, 0) - 1
        if left > 0:
            self._runs[event.job_id] = left
        else:
            self._runs.pop(event.job_id, None)
        if not self._runs:
            self._idle.set()

    def running(self, job_id: str) -> bool:
        """Whether a run of ``job_id`` is under way."""
        return self._runs.get(job_id, 0) > 0

    def count(self) -> int:
        """How many runs, of every job, are under way."""
        return sum(self._runs.values())

    async def wait(self, timeout: float) -> None:
        """Until no run is under way, or ``timeout`` seconds have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

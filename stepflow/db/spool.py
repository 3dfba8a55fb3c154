"""Writes that must land eventually: retried with backoff in the background until they commit.

The ``run_tool`` activity must not fail (and burn a retry of the tool) because the projection is down, yet
its log lines and metrics should not be lost either. It hands those writes to a :class:`WriteSpool`, waits a
little for them to commit and returns the tool's result regardless; the spool keeps retrying, with backoff,
until the database answers again (a write the database rejects, an IntegrityError, is not retried). The
spool is bounded (``max_pending`` writes); beyond that a write is dropped with an error line in the worker
log rather than letting an outage exhaust memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.exc import IntegrityError

from stepflow.errors import DatabaseError
from stepflow.observability import metrics as ops_metrics

log = structlog.get_logger(__name__)

Attempt = Callable[[], Awaitable[object]]


class WriteSpool:
    """Background retries of idempotent projection writes."""

    def __init__(self, *, max_pending: int = 10_000, initial_backoff: float = 0.2, max_backoff: float = 10.0) -> None:
        self._tasks: set[asyncio.Task[bool]] = set()
        self._max_pending = max_pending
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self.dropped = 0
        self.retries = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, attempt: Attempt, *, what: str) -> asyncio.Task[bool]:
        """Start retrying ``attempt`` (an idempotent write) until it succeeds; the task's result is True."""
        if len(self._tasks) >= self._max_pending:
            self.dropped += 1
            ops_metrics.projection_write_failed("dropped")
            log.error("projection write dropped: too many writes waiting for the database", what=what)
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            done.set_result(False)
            return asyncio.ensure_future(done)
        task = asyncio.create_task(self._retry(attempt, what), name=f"stepflow-spool-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def submit_and_wait(self, attempt: Attempt, *, what: str, wait_s: float) -> bool:
        """Submit, then wait up to ``wait_s`` seconds; True if it committed by then (else it keeps retrying)."""
        task = self.submit(attempt, what=what)
        done, _ = await asyncio.wait({task}, timeout=wait_s)
        return bool(done) and task.result()

    async def _retry(self, attempt: Attempt, what: str) -> bool:
        delay = self._initial_backoff
        while True:
            try:
                await attempt()
                return True
            except DatabaseError as error:
                if isinstance(error.__cause__, IntegrityError):  # not an outage: retrying cannot help
                    log.error("projection write rejected", what=what, error=str(error))
                    return False
                self.retries += 1
                log.warning("projection write failed; retrying", what=what, error=str(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)

    async def close(self, *, grace_s: float = 10.0) -> None:
        """Give waiting writes ``grace_s`` seconds to land, then cancel (and report) the rest."""
        if not self._tasks:
            return
        _, still = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in still:
            task.cancel()
        if still:
            log.error("projection writes lost at shutdown: the database stayed unavailable", count=len(still))
            await asyncio.gather(*still, return_exceptions=True)

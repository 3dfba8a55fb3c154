"""Group commit: many concurrent writes, few transactions, few statements.

Activities of many executions write to the projection at once. Instead of a transaction each, writes are
queued and one writer task runs everything queued so far inside a single transaction. A caller's ``await``
returns only after the transaction holding its write committed, so nothing acknowledged is lost. If a
batch fails, its writes are retried one transaction each, so one bad write fails alone and the others
still commit. SQLite thus sees exactly one writer, which is what it wants.

Two kinds of write can be queued: a function of the connection (:meth:`GroupCommitter.submit`), and rows
for a statement (:meth:`GroupCommitter.submit_rows`). Rows of the same statement from every write of a batch
are sent as one ``executemany`` (ordered by the statement's ``phase``: parent rows before the rows that
reference them), which is where batching pays: one statement for a hundred executions' log lines instead
of a hundred. Functions run after the rows, in the order they were queued. On SQLite a batch of rows only
runs in one worker-thread hop on a synchronous engine (``sync_engine``) rather than a hop per statement.

This is a write batcher, not a scheduler: what runs when is still Temporal's business.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stepflow.observability import metrics as ops_metrics

T = TypeVar("T")
Write = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True)
class RowStatement:
    """A statement run once per batch with every queued row: ``build(connection)`` makes it for the dialect."""

    key: str
    phase: int
    build: Callable[[Any], Any]


@dataclass
class _Pending:
    write: Write | None = None
    rows: Sequence[tuple[RowStatement, Sequence[dict[str, Any]]]] = ()
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    """Runs queued writes in shared transactions; ``max_batch=1`` gives one transaction per write."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 500, sync_engine: Engine | None = None) -> None:
        self._engine = engine
        self._sync_engine = sync_engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0
        self.statements = 0
        self._built: dict[str, Any] = {}  # RowStatement.key -> its statement (one dialect per committer)

    async def submit(self, write: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Queue a write and wait until the transaction holding it committed; return its result."""
        result: T = await self._enqueue(_Pending(write=write))
        return result

    async def submit_rows(self, rows: Sequence[tuple[RowStatement, Sequence[dict[str, Any]]]]) -> None:
        """Queue rows for statements (all in the same transaction); wait until it committed."""
        await self._enqueue(_Pending(rows=[(statement, list(values)) for statement, values in rows if values]))

    async def _enqueue(self, pending: _Pending) -> Any:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stepflow-group-commit")
        await self._queue.put(pending)
        return await asyncio.shield(pending.future)

    async def close(self) -> None:
        """Finish queued writes, then stop the writer task."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _statement(self, statement: RowStatement, connection: Any) -> Any:
        """The statement built once (building one, an upsert especially, costs more than running it)."""
        built = self._built.get(statement.key)
        if built is None:
            built = self._built[statement.key] = statement.build(connection)
        return built

    async def _execute(self, connection: AsyncConnection, batch: list[_Pending]) -> list[Any]:
        for statement, values in self._grouped(batch):
            await connection.execute(self._statement(statement, connection), values)
            self.statements += 1
        results = []
        for pending in batch:
            results.append(None if pending.write is None else await pending.write(connection))
        return results

    def _grouped(self, batch: list[_Pending]) -> list[tuple[RowStatement, list[dict[str, Any]]]]:
        grouped: dict[str, tuple[RowStatement, list[dict[str, Any]]]] = {}
        for pending in batch:
            for statement, values in pending.rows:
                grouped.setdefault(statement.key, (statement, []))[1].extend(values)
        return sorted(grouped.values(), key=lambda item: item[0].phase)

    def _execute_sync(self, batch: list[_Pending]) -> list[Any]:
        """A batch of row writes only, in one transaction on the synchronous engine (runs in a worker thread)."""
        assert self._sync_engine is not None
        with self._sync_engine.begin() as connection:
            for statement, values in self._grouped(batch):
                connection.execute(self._statement(statement, connection), values)
                self.statements += 1
        return [None] * len(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            if self._sync_engine is not None and all(pending.write is None for pending in batch):
                results = await asyncio.to_thread(self._execute_sync, batch)
            else:
                async with self._engine.begin() as connection:
                    results = await self._execute(connection, batch)
        except Exception as error:
            if len(batch) == 1:
                ops_metrics.projection_write_failed()
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            for pending in batch:  # isolate the failing write; the others still commit
                await self._commit([pending])
            return
        self.transactions += 1
        ops_metrics.projection_batch_committed(len(batch))
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)

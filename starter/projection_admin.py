"""``stepflow projection verify`` / ``rebuild``: the SQL projection checked against, and rebuilt from, Temporal.

:func:`verify` lists every ToolExecutionWorkflow (optionally of one task queue) and compares it with its
``executions`` row (:mod:`stepflow.execution_records`). Executions rejected with ToolNotFound have no row by
design (the row's tool must exist), so they are skipped and counted. :func:`rebuild` rewrites the missing or
wrong rows from the histories; it is idempotent, and a wiped database comes back (tools rows from the
registry, or minimal ones from the histories).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from temporalio.client import Client, WorkflowExecution

from stepflow.db.projection import Projection
from stepflow.execution_records import Mismatch, TemporalRecord, compare, load_record, restore
from stepflow.models import ToolInfo
from stepflow.workflow_start import WORKFLOW_NAME


@dataclass
class VerifyReport:
    """What verify found: executions checked, mismatches, and those skipped with the reason."""

    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def wrong_ids(self) -> list[str]:
        return sorted({m.execution_id for m in self.mismatches})


async def list_executions(client: Client, task_queue: str | None = None) -> list[WorkflowExecution]:
    query = f'WorkflowType = "{WORKFLOW_NAME}"'
    if task_queue:
        query += f' AND TaskQueue = "{task_queue}"'
    return [execution async for execution in client.list_workflows(query)]


async def _records(client: Client, executions: list[WorkflowExecution], concurrency: int) -> list[TemporalRecord]:
    gate = asyncio.Semaphore(concurrency)

    async def one(execution: WorkflowExecution) -> TemporalRecord:
        async with gate:
            return await load_record(client, execution)

    return list(await asyncio.gather(*(one(execution) for execution in executions)))


async def verify(
    client: Client, projection: Projection, *, task_queue: str | None = None, concurrency: int = 20
) -> tuple[VerifyReport, list[TemporalRecord]]:
    """Compare every execution Temporal knows with its row."""
    report = VerifyReport()
    records = await _records(client, await list_executions(client, task_queue), concurrency)
    for record in records:
        row = await projection.reader.get_execution(record.execution.id)
        if row is None and record.error is not None and record.error.type == "ToolNotFound":
            report.skipped[record.execution.id] = "rejected with ToolNotFound: no row by design"
            continue
        report.checked += 1
        report.mismatches.extend(compare(record, row))
    return report, records


async def rebuild(
    client: Client,
    projection: Projection,
    *,
    tools: list[ToolInfo] | None = None,
    task_queue: str | None = None,
    concurrency: int = 20,
) -> tuple[int, VerifyReport]:
    """Rewrite every missing or wrong row from Temporal's histories; returns (rows written, report before)."""
    if tools:
        await projection.writer.upsert_tools(tools)
    report, records = await verify(client, projection, task_queue=task_queue, concurrency=concurrency)
    wrong = set(report.wrong_ids)
    known_tools = {tool.id for tool in await projection.reader.list_tools()}
    written = 0
    for record in sorted(records, key=lambda r: r.execution.start_time):
        if record.execution.id not in wrong or record.job is None:
            continue
        request = record.job.request
        if request.tool_id not in known_tools:
            version = record.version or request.version or "unknown"
            await projection.writer.upsert_tools([ToolInfo(id=request.tool_id, version=version, kind="unknown")])
            known_tools.add(request.tool_id)
        written += await restore(projection, record)
    return written, report

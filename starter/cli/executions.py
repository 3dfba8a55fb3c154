"""Execution commands: ``run``, ``start``, ``status``, ``result``, ``cancel`` and ``list``.

``run`` and ``start`` build an :class:`~stepflow.models.ExecutionRequest` from the options (see
:mod:`starter.cli.requests`); nothing is started when an option is malformed. ``run`` waits with a live
spinner and exits 0 only when the execution completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table
from temporalio.client import WorkflowFailureError

from starter import console
from starter.cli import common
from starter.cli.requests import RequestContext, build_limits, build_request, parse_time
from starter.executor import Executor
from stepflow.errors import DatabaseError, InvalidParameters
from stepflow.identity import Role
from stepflow.models import ExecutionFilter, ExecutionResult, ExecutionStatus, Priority

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a human view.")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only act on this tenant's executions.")]
ExecutionArg = Annotated[str, typer.Argument(help="The execution id (printed by run/start, listed by list).")]

ToolArg = Annotated[str, typer.Argument(help="The tool id (see `stepflow tools`).")]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("-p", "--param", help="A parameter as key=value; the value is JSON when it parses, else a string."),
]
ParamsOpt = Annotated[str | None, typer.Option("--params", help="All parameters as a JSON object.")]
VersionOpt = Annotated[str | None, typer.Option("--version", help="Tool version (latest when omitted).")]
RunTenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant id.")]
UserOpt = Annotated[str, typer.Option("--user", help="User id.")]
SessionOpt = Annotated[str, typer.Option("--session", help="Session id.")]
RequestIdOpt = Annotated[
    str | None, typer.Option("--request-id", help="Idempotency key: the same key in a tenant is the same execution.")
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Per-attempt timeout in seconds (config default otherwise).")
]
RetriesOpt = Annotated[int, typer.Option("--retries", help="Retries after the first attempt.")]
RetryDelayOpt = Annotated[
    int | None, typer.Option("--retry-delay", help="Delay before the first retry, in milliseconds.")
]
PriorityOpt = Annotated[Priority, typer.Option("--priority", help="Scheduling priority.")]
MemoryOpt = Annotated[int | None, typer.Option("--memory-mb", help="Memory limit in MiB (sandboxed tools).")]
CpuLimitOpt = Annotated[float | None, typer.Option("--cpu-limit", help="CPU share in cores, e.g. 0.5.")]
CpuSecondsOpt = Annotated[int | None, typer.Option("--cpu-seconds", help="CPU time limit in seconds.")]
ProcessesOpt = Annotated[int | None, typer.Option("--max-processes", help="Process and thread limit.")]
OutputOpt = Annotated[int | None, typer.Option("--max-output-bytes", help="Output size limit in bytes.")]
NetworkOpt = Annotated[bool, typer.Option("--network", help="Let the tool use the network.")]

PENDING_HINT_AFTER = 5.0
"""Seconds an execution may stay pending before ``run`` suggests that no worker is running."""


def show_result(result: ExecutionResult, as_json: bool) -> int:
    if as_json:
        common.print_json(result)
    else:
        console.render_result(result)
    return common.exit_code_for_result(result)


async def _wait(executor: Executor, execution_id: str, *, spinner: bool) -> ExecutionResult:
    """Wait for the end of an execution, showing its live status (attempt, progress) on stderr."""
    handle = executor.client.get_workflow_handle(execution_id)

    async def finished() -> None:
        with contextlib.suppress(WorkflowFailureError):  # the result (with its typed error) is read below
            await handle.result()

    done = asyncio.create_task(finished())
    status = console.stderr.status(f"{execution_id}: starting", spinner="dots") if spinner else None
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        if status is not None:
            status.start()
        while not done.done():
            if status is not None:
                progress = await executor.get_execution_progress(execution_id)
                parts = [f"{execution_id}: {progress.status.value}"]
                if progress.status is ExecutionStatus.PENDING and loop.time() - began > PENDING_HINT_AFTER:
                    queue = executor.settings.temporal.task_queue
                    parts.append(f"no worker has taken it yet: is `stepflow worker` running on task queue {queue!r}?")
                if progress.attempt:
                    parts.append(f"attempt {progress.attempt}")
                if progress.progress is not None:
                    parts.append(f"progress {json.dumps(progress.progress, default=str)}")
                if progress.last_failure:
                    parts.append(f"last failure: {progress.last_failure}")
                status.update(" · ".join(parts))
            await asyncio.wait({done}, timeout=0.5)
        await done
    finally:
        if status is not None:
            status.stop()
        done.cancel()
    return await executor.get_execution_result(execution_id)


def request_command(*, wait: bool) -> Callable[..., None]:
    """``run`` (wait for the result) or ``start`` (print the id): one definition of the request's options."""

    def command(
        tool: ToolArg,
        param: ParamOpt = None,
        params: ParamsOpt = None,
        version: VersionOpt = None,
        tenant: RunTenantOpt = "default",
        user: UserOpt = "anonymous",
        session: SessionOpt = "",
        request_id: RequestIdOpt = None,
        timeout: TimeoutOpt = None,
        retries: RetriesOpt = 0,
        retry_delay: RetryDelayOpt = None,
        priority: PriorityOpt = Priority.NORMAL,
        memory_mb: MemoryOpt = None,
        cpu_limit: CpuLimitOpt = None,
        cpu_seconds: CpuSecondsOpt = None,
        max_processes: ProcessesOpt = None,
        max_output_bytes: OutputOpt = None,
        network: NetworkOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        async def body() -> int:
            limits = build_limits(memory_mb, cpu_limit, cpu_seconds, max_processes, max_output_bytes, network)
            request = build_request(
                tool,
                param,
                params,
                version=version,
                context=RequestContext(tenant=tenant, user=user, session=session, request_id=request_id),
                timeout=timeout,
                retries=retries,
                retry_delay=retry_delay,
                priority=priority,
                limits=limits,
            )
            async with common.executor() as executor:
                execution_id = await executor.execute_tool_async(request)
                if wait:
                    return show_result(await _wait_started(executor, execution_id), as_json)
            if as_json:
                common.print_json({"execution_id": execution_id})
            else:
                console.stdout.print(execution_id, highlight=False)
            return 0

        common.run(body(), as_json=as_json)

    command.__name__ = "run" if wait else "start"
    command.__doc__ = (
        "Run a tool and wait for its result (exit 0 only when it completed)."
        if wait
        else "Start a tool execution and print its id without waiting."
    )
    return command


async def _wait_started(executor: Executor, execution_id: str) -> ExecutionResult:
    """Wait for an execution ``run`` just started, with a spinner when stderr is a terminal."""
    spinner = console.stderr.is_terminal
    if spinner:
        console.stderr.print(f"started {execution_id} (Ctrl-C stops waiting, not the execution)", highlight=False)
    return await _wait(executor, execution_id, spinner=spinner)


def status(execution_id: ExecutionArg, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Show an execution's live status: status, current attempt, last progress and last failure."""

    async def body() -> int:
        async with common.executor(as_tenant=tenant) as executor:
            progress = await executor.get_execution_progress(execution_id)
            try:
                steps = await executor.list_steps(execution_id)
            except DatabaseError as error:  # the live status is Temporal's; only a composite's steps need SQL
                console.stderr.print(f"steps not shown: {error.message}", highlight=False)
                steps = []
        if as_json:
            # a composite's steps (its child executions) ride along under "steps"
            common.print_json({**progress.model_dump(mode="json"), "steps": steps} if steps else progress)
            return 0
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("execution", progress.execution_id)
        table.add_row("status", console.styled(progress.status))
        if progress.attempt is not None:
            table.add_row("attempt", str(progress.attempt))
        if progress.progress is not None:
            table.add_row("progress", json.dumps(progress.progress, default=str))
        if progress.last_failure:
            table.add_row("last failure", progress.last_failure)
        console.stdout.print(table)
        if steps:
            console.stdout.print(console.steps_table(execution_id, steps))
        return 0

    common.run(body(), as_json=as_json)


def result(execution_id: ExecutionArg, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Show an execution's result; the exit code says how it ended (0 completed, 12 not finished yet)."""

    async def body() -> int:
        async with common.executor(as_tenant=tenant) as executor:
            outcome = await executor.get_execution_result(execution_id)
        return show_result(outcome, as_json)

    common.run(body(), as_json=as_json)


def cancel(
    execution_id: ExecutionArg,
    tenant: TenantOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the execution has stopped; print it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Cancel an execution: the running tool is stopped and the execution ends cancelled."""

    async def body() -> int:
        async with common.executor(as_tenant=tenant, role=Role.MEMBER) as executor:
            before = await executor.get_execution_status(execution_id)
            if before.is_terminal:
                if as_json:
                    common.print_json({"execution_id": execution_id, "cancel_requested": False, "status": before})
                else:
                    console.stdout.print(f"{execution_id} already ended {before.value}: nothing to cancel")
                return 0
            await executor.cancel_execution(execution_id)
            if wait:
                outcome = await _wait(executor, execution_id, spinner=console.stderr.is_terminal)
                show_result(outcome, as_json)
                return 0
        if as_json:
            common.print_json({"execution_id": execution_id, "cancel_requested": True})
        else:
            console.stdout.print(f"cancellation requested for {execution_id}", highlight=False)
        return 0

    common.run(body(), as_json=as_json)


def list_executions(
    tool: Annotated[str | None, typer.Option("--tool", help="Only this tool id.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user.")] = None,
    status: Annotated[ExecutionStatus | None, typer.Option("--status", help="Only this status.")] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="Only children of this execution.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Started at or after: ISO 8601, or an age like 30s, 10m, 2h, 1d.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Started before: ISO 8601 or an age.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List executions from the executions table (no Temporal server needed)."""

    async def body() -> int:
        execution_filter = _filter(tool, tenant, user, status, parent, since, until, limit)
        async with common.projection() as projection:
            rows = await projection.reader.list_executions(execution_filter)
        if as_json:
            common.print_json(list(rows))
        else:
            console.stdout.print(console.executions_table(rows))
        return 0

    common.run(body(), as_json=as_json)


def _filter(
    tool: str | None,
    tenant: str | None,
    user: str | None,
    status: ExecutionStatus | None,
    parent: str | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> ExecutionFilter:
    try:
        return ExecutionFilter(
            tool_id=tool,
            tenant_id=tenant,
            user_id=user,
            status=status,
            parent_execution_id=parent,
            started_after=parse_time(since, "--since") if since else None,
            started_before=parse_time(until, "--until") if until else None,
            limit=limit,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidParameters(f"invalid list filter: {problems}") from None


def register(app: typer.Typer) -> None:
    """Add the execution commands to ``app``."""
    app.command(name="run")(request_command(wait=True))
    app.command(name="start")(request_command(wait=False))
    app.command()(status)
    app.command()(result)
    app.command()(cancel)
    app.command(name="list")(list_executions)


__all__ = ["register"]

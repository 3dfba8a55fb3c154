"""Builds the Worker (registry, projection, activities, slots, pollers) and runs it until a signal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import structlog
from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import stepflow.tools
from activities.projection import ProjectionActivities
from activities.resolve import ResolveActivities
from activities.run_and_record import ToolActivities
from stepflow.config import Settings
from stepflow.db.projection import Projection
from stepflow.identity import load_permission_checker
from stepflow.observability import prometheus
from stepflow.registry import ToolRegistry
from stepflow.temporal import connect
from stepflow.tools.composite import validate_composites
from stepflow.tools.loader import load_tool_file
from worker.reconciler import running_reconciler
from workflows import ToolExecutionWorkflow

log = structlog.get_logger(__name__)

# The sandbox re-imports a workflow's modules for every workflow it starts unless they are passed through.
# Ours hold deterministic code and immutable constants only (no state shared between runs), so they are
# imported once per worker; the sandbox still guards the workflow code against non-deterministic calls.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows", "stepflow", "activities")
)

STICKY_QUEUE_TIMEOUT = timedelta(seconds=3)
"""How long a workflow task waits on a worker's sticky queue before any worker may take it (the SDK's default is
10 s). A worker killed mid-run leaves its executions' next tasks there: with a 5 s heartbeat timeout, another
worker resumed them 15 s after the kill with the default and 8 s with this (tests/faults, docs/reliability.md).
A live worker too busy to take a task within it only costs a replay of the (short) history elsewhere."""

BUILTIN_TOOL_MODULES = ("stepflow.tools.builtin",)
HEARTBEAT_EVERY_S = 0.4
BUILTIN_TOOL_FILES = tuple(
    Path(stepflow.tools.__file__).parent / name for name in ("builtin_commands.toml", "builtin_composites.toml")
)


def build_registry(settings: Settings) -> ToolRegistry:
    """The built-in tools, the modules named in ``STEPFLOW_TOOL_MODULES`` and the files in ``STEPFLOW_TOOL_FILES``.

    Composite tools are checked against the whole registry once everything is loaded (ConfigError if a step
    names an unknown tool or version, or composites include each other); a tool whose own default limits are
    above ``STEPFLOW_EXECUTOR_MAX_*`` is refused as it is registered.
    """
    registry = ToolRegistry(caps=settings.executor)
    for module in (*BUILTIN_TOOL_MODULES, *settings.tool_modules):
        registry.load_module(module)
    for path in (*BUILTIN_TOOL_FILES, *settings.tool_files):
        for definition in load_tool_file(path):
            registry.register(definition)
    validate_composites(registry)
    return registry


def build_worker(
    client: Client,
    settings: Settings,
    registry: ToolRegistry,
    projection: Projection,
    *,
    task_queue: str | None = None,
) -> Worker:
    """A Worker for the execution workflow and its activities, sized from the settings."""
    executor, scheduler, pool = settings.executor, settings.scheduler, settings.worker_pool
    # A cancel reaches a running activity only in the answer to a heartbeat: heartbeat often, and let the SDK
    # send each one (it would otherwise hold them back for 0.8 x the heartbeat timeout), so cancels land in < 1 s.
    heartbeat_every = timedelta(seconds=min(HEARTBEAT_EVERY_S, executor.heartbeat_timeout / 3))
    tools = ToolActivities(
        registry,
        projection.writer,
        caps=executor,
        heartbeat_every=heartbeat_every,
        cancel_grace=executor.cancel_grace_delta,
    )
    permissions = load_permission_checker(settings.permission_checker, projection.reader)
    bookkeeping = ProjectionActivities(registry, projection.writer, executor, permissions)
    resolver = ResolveActivities(registry)
    pollers = (
        PollerBehaviorAutoscaling(minimum=pool.min_workers, maximum=pool.max_workers)
        if pool.enable_auto_scaling
        else PollerBehaviorSimpleMaximum(maximum=scheduler.worker_count)
    )
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=[ToolExecutionWorkflow],
        activities=[
            tools.run_and_record,
            bookkeeping.prepare_execution,
            bookkeeping.finish_execution,
            resolver.resolve_tool,
        ],
        max_concurrent_activities=executor.max_concurrent_executions,
        max_concurrent_local_activities=executor.max_concurrent_executions,
        max_concurrent_workflow_tasks=max(2, min(executor.max_concurrent_executions, 100)),
        workflow_task_poller_behavior=pollers,
        activity_task_poller_behavior=pollers,
        graceful_shutdown_timeout=timedelta(seconds=executor.cancel_grace + 5),
        max_heartbeat_throttle_interval=heartbeat_every,
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
        workflow_runner=WORKFLOW_RUNNER,
    )


async def open_projection(settings: Settings) -> Projection:
    """The projection of ``settings``, writing logs and metrics as STEPFLOW_EXECUTOR_ENABLE_* say."""
    return await Projection.open(
        settings.resolved_database_url,
        write_logs=settings.executor.enable_logging,
        write_metrics=settings.executor.enable_monitoring,
    )


@asynccontextmanager
async def running_projection(settings: Settings, registry: ToolRegistry) -> AsyncIterator[Projection]:
    """Open the projection, write every registered tool into ``tools``, close it afterwards."""
    projection = await open_projection(settings)
    try:
        await projection.writer.upsert_tools([definition.info() for definition in registry.all()])
        yield projection
    finally:
        await projection.close()


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run a worker until SIGINT/SIGTERM (or ``stop``), then shut down gracefully."""
    registry = build_registry(settings)
    prometheus.serve(settings.metrics)  # before connecting: the client's runtime exports the SDK's metrics there
    client = await connect(settings.temporal)
    prometheus.watch_backlog(client, settings.temporal.task_queue)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_projection(settings, registry) as projection:
            worker = build_worker(client, settings, registry, projection)
            log.info(
                "worker started",
                task_queue=settings.temporal.task_queue,
                address=settings.temporal.address,
                tools=len(registry),
                database=settings.resolved_database_url,
            )
            task_queue, interval = settings.temporal.task_queue, settings.reconcile_interval
            async with worker, running_reconciler(client, projection, task_queue, interval=interval):
                await stop.wait()
                log.info("worker stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("worker stopped")

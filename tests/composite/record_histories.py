"""Record the replay histories of composite executions: ``python -m tests.composite.record_histories [NAME...]``.

Runs composites on a time-skipping test server with a real worker and writes each parent's history to
``tests/replay/histories/composite_NAME.json``: ``completed`` (the diamond), ``fail_fast`` (a failed step
cancels its sibling), ``continue`` (the others finish, the parent reports all), ``cancelled`` (the parent
is cancelled while two children run) and ``timed_out`` (the parent's budget runs out). With names, only
those are recorded. Re-record after a deliberate change to the composite path; a change that running
executions must survive goes behind ``workflow.patched`` and keeps the old files.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow import search_attributes
from stepflow.converter import DATA_CONVERTER
from stepflow.models import ExecutionOptions, ExecutionRequest, ExecutionStatus
from tests.composite.conftest import TOOLS, wait_until_running
from tests.conftest import BIN, executor_for, make_settings, running_worker

HISTORIES = Path(__file__).parent.parent / "replay" / "histories"


async def _run(ex: Executor, request: ExecutionRequest, expect: ExecutionStatus) -> str:
    execution_id = await ex.execute_tool_async(request)
    with contextlib.suppress(WorkflowFailureError):
        await ex.client.get_workflow_handle(execution_id).result()
    assert await ex.get_execution_status(execution_id) is expect
    return execution_id


async def _completed(ex: Executor) -> str:
    request = ExecutionRequest(tool_id="test-diamond", parameters={"text": "hi"})
    return await _run(ex, request, ExecutionStatus.COMPLETED)


async def _fail_fast(ex: Executor) -> str:
    return await _run(ex, ExecutionRequest(tool_id="test-fail-fast"), ExecutionStatus.FAILED)


async def _continue(ex: Executor) -> str:
    return await _run(ex, ExecutionRequest(tool_id="test-continue"), ExecutionStatus.FAILED)


async def _cancelled(ex: Executor) -> str:
    execution_id = await ex.execute_tool_async(ExecutionRequest(tool_id="test-parallel-sleep"))
    await wait_until_running(ex.projection, execution_id, ["left", "right"])
    await ex.cancel_execution(execution_id)
    with contextlib.suppress(WorkflowFailureError):
        await ex.client.get_workflow_handle(execution_id).result()
    assert await ex.get_execution_status(execution_id) is ExecutionStatus.CANCELLED
    return execution_id


async def _timed_out(ex: Executor) -> str:
    options = ExecutionOptions(timeout=timedelta(seconds=2))
    request = ExecutionRequest(tool_id="test-parallel-sleep", options=options)
    return await _run(ex, request, ExecutionStatus.TIMED_OUT)


RECORDINGS: dict[str, Callable[[Executor], Awaitable[str]]] = {
    "completed": _completed,
    "fail_fast": _fail_fast,
    "continue": _continue,
    "cancelled": _cancelled,
    "timed_out": _timed_out,
}


async def record(names: list[str]) -> list[Path]:
    """Run the named composites (all when empty) and save their parents' histories."""
    unknown = sorted(set(names) - set(RECORDINGS))
    if unknown:
        raise SystemExit(f"unknown recordings {unknown}; choose from {sorted(RECORDINGS)}")
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER, test_server_existing_path=str(BIN / "temporal-test-server")
    )
    saved = []
    try:
        await search_attributes.register(env.client, env.client.namespace)
        with tempfile.TemporaryDirectory() as tmp:
            settings = make_settings(Path(tmp)).model_copy(update={"tool_files": [TOOLS]})
            async with running_worker(env, settings), executor_for(env, settings) as ex:
                for name in names or list(RECORDINGS):
                    execution_id = await RECORDINGS[name](ex)
                    history = await env.client.get_workflow_handle(execution_id).fetch_history()
                    path = HISTORIES / f"composite_{name}.json"
                    path.write_text(history.to_json(), encoding="utf-8")
                    saved.append(path)
    finally:
        await env.shutdown()
    return saved


if __name__ == "__main__":
    for written in asyncio.run(record(sys.argv[1:])):
        print(f"wrote {written}")

"""Record the replay histories of composite executions: ``python -m tests.composite.record_histories``.

Runs a completed diamond, a fail-fast composite and a cancelled composite on a time-skipping test server
with a real worker, and writes each parent's history to ``tests/replay/histories/composite_*.json``.
Re-record after a deliberate change to the composite path (and keep the old files if the change is
behind ``workflow.patched``).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from stepflow import search_attributes
from stepflow.converter import DATA_CONVERTER
from stepflow.models import ExecutionRequest, ExecutionStatus
from tests.composite.conftest import TOOLS, wait_until_running
from tests.conftest import BIN, executor_for, make_settings, running_worker

HISTORIES = Path(__file__).parent.parent / "replay" / "histories"


async def _save(client: Client, execution_id: str, name: str) -> Path:
    history = await client.get_workflow_handle(execution_id).fetch_history()
    path = HISTORIES / f"composite_{name}.json"
    path.write_text(history.to_json(), encoding="utf-8")
    return path


async def record() -> list[Path]:
    """Run the three composites and save their parents' histories."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER, test_server_existing_path=str(BIN / "temporal-test-server")
    )
    saved = []
    try:
        await search_attributes.register(env.client, env.client.namespace)
        with tempfile.TemporaryDirectory() as tmp:
            settings = make_settings(Path(tmp)).model_copy(update={"tool_files": [TOOLS]})
            async with running_worker(env, settings), executor_for(env, settings) as ex:
                result = await ex.execute_tool(ExecutionRequest(tool_id="test-diamond", parameters={"text": "hi"}))
                saved.append(await _save(env.client, result.execution_id, "completed"))

                failing = await ex.execute_tool_async(ExecutionRequest(tool_id="test-fail-fast"))
                with contextlib.suppress(WorkflowFailureError):
                    await ex.client.get_workflow_handle(failing).result()
                saved.append(await _save(env.client, failing, "fail_fast"))

                cancelled = await ex.execute_tool_async(ExecutionRequest(tool_id="test-parallel-sleep"))
                await wait_until_running(ex.projection, cancelled, ["left", "right"])
                await ex.cancel_execution(cancelled)
                with contextlib.suppress(WorkflowFailureError):
                    await ex.client.get_workflow_handle(cancelled).result()
                assert await ex.get_execution_status(cancelled) is ExecutionStatus.CANCELLED
                saved.append(await _save(env.client, cancelled, "cancelled"))
    finally:
        await env.shutdown()
    return saved


if __name__ == "__main__":
    for path in asyncio.run(record()):
        print(f"wrote {path}")

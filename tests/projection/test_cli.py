"""The CLI over the projection, as a user runs it: ``stepflow metrics``, ``logs``, ``projection verify|rebuild``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from stepflow.errors import ExecutionFailed
from stepflow.models import ExecutionRequest
from tests.conftest import executor_for, make_settings, running_worker

pytestmark = pytest.mark.dev_server

STEPFLOW = Path(sys.executable).parent / "stepflow"


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(STEPFLOW), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_metrics_logs_verify_rebuild_commands(dev_env, tmp_path):
    settings = make_settings(tmp_path)
    env = {
        **os.environ,
        "STEPFLOW_DATABASE_URL": settings.resolved_database_url,
        "STEPFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "STEPFLOW_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
    }
    queue = ["--task-queue", settings.temporal.task_queue]
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        ok = await executor.execute_tool(ExecutionRequest(tool_id="echo", parameters={"a": 1}))
        with pytest.raises(ExecutionFailed):
            await executor.execute_tool(ExecutionRequest(tool_id="fail", parameters={"message": "no"}))

        code, out = await _cli(env, "metrics", "--json")
        assert code == 0, out
        figures = json.loads(out)
        assert (figures["total_executions"], figures["successful_executions"], figures["failed_executions"]) == (
            2,
            1,
            1,
        )
        assert figures["error_rate"] == 0.5

        code, out = await _cli(env, "logs", ok.execution_id, "--json")
        assert code == 0, out
        assert [json.loads(line)["message"] for line in out.splitlines()] == [
            "validated",
            "attempt 1 started",
            "echoing",
            "completed",
        ]

        code, out = await _cli(env, "projection", "verify", *queue)
        assert code == 0, out
        async with executor.projection.engine.begin() as connection:
            await connection.execute(
                text("UPDATE executions SET status = 'failed' WHERE id = :id"), {"id": ok.execution_id}
            )
        code, out = await _cli(env, "projection", "verify", *queue)
        assert code == 1 and f"{ok.execution_id}: status" in out, out
        code, out = await _cli(env, "projection", "rebuild", *queue, "--json")
        assert code == 0, out
        assert json.loads(out) == {"rows_written": 1, "mismatched_before": 1, "mismatched_after": 0}
        code, out = await _cli(env, "projection", "verify", *queue)
        assert code == 0, out

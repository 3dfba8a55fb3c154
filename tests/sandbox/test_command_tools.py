"""Command tools through the real worker on the Temporal dev server: limits, cancel, timeout, retries, env."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stepflow.config import Settings
from stepflow.errors import ResourceLimitExceeded
from stepflow.models import (
    ExecutionContext,
    ExecutionOptions,
    ExecutionRequest,
    ExecutionStatus,
    MetricFilter,
    ResourceLimits,
)
from tests.conftest import executor_for, make_settings, running_worker
from tests.sandbox.helpers import TOOLS_FILE, requires_sandbox, sandbox_pids

pytestmark = [
    pytest.mark.dev_server,
    requires_sandbox,
]


@pytest.fixture
def command_settings(tmp_path: Path) -> Settings:
    """The test tool file loaded; a heartbeat timeout a loaded machine does not trip over (the CPU spin)."""
    settings = make_settings(tmp_path, heartbeat_timeout=5)
    settings.tool_files = [TOOLS_FILE]
    return settings


def request(tool_id: str, parameters: dict[str, Any], **options: Any) -> ExecutionRequest:
    context = options.pop("context", ExecutionContext())
    return ExecutionRequest(
        tool_id=tool_id, parameters=parameters, context=context, options=ExecutionOptions(**options)
    )


async def test_breached_limits_fail_with_the_limit_named_and_the_worker_keeps_going(dev_env, command_settings):
    async with running_worker(dev_env, command_settings), executor_for(dev_env, command_settings) as ex:
        cases = {
            "memory_mb": ("x = bytearray(512 * 2**20)", ResourceLimits(memory_mb=128)),
            "cpu_seconds": ("while True: pass", ResourceLimits(cpu_seconds=1)),
            "max_processes": (
                "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(1000)",
                ResourceLimits(max_processes=8),
            ),
            "max_output_bytes": (
                "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)",
                ResourceLimits(max_output_bytes=50_000),
            ),
        }
        for limit, (code, limits) in cases.items():
            with pytest.raises(ResourceLimitExceeded) as raised:
                await ex.execute_tool(request("test-py", {"code": code}, resource_limits=limits, retry_count=2))
            assert raised.value.message.startswith(limit), raised.value.message
        assert sandbox_pids() == []
        done = await ex.execute_tool(request("wc", {"text": "one two three\nfour\n"}))
        assert done.status is ExecutionStatus.COMPLETED and done.output == {"lines": 2, "words": 4}
        metrics = {m.name: m for m in await ex.get_metric_rows(MetricFilter(execution_id=done.execution_id))}
        assert metrics["cpu_time_ms"].value > 0 and metrics["cpu_time_ms"].unit == "ms"
        assert metrics["max_rss_kb"].value > 100 and metrics["max_rss_kb"].unit == "kB"
        lines = [(entry.level, entry.message) for entry in await ex.get_logs(done.execution_id)]
        assert ("info", '{"lines": 2, "words": 4}') in lines, lines
        printed = await ex.execute_tool(request("print", {"message": "still here"}))
        assert printed.output == "still here\n"


async def test_parameters_and_environment_reach_the_tool_as_declared(dev_env, command_settings, monkeypatch):
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", "do-not-leak")
    monkeypatch.setenv("STEPFLOW_TEST_ALLOWED", "allowed")
    nasty = "; rm -rf / $(touch /tmp/pwned) `id` 'single' \"double\"\nsecond line"
    async with running_worker(dev_env, command_settings), executor_for(dev_env, command_settings) as ex:
        result = await ex.execute_tool(request("test-argv", {"value": nasty, "flag": 3}))
        assert result.output == {"argv": [nasty, "--flag=3"], "stdin": f"<{nasty}>"}
        result = await ex.execute_tool(request("test-argv", {"value": "x"}))
        assert result.output == {"argv": ["x"], "stdin": "<x>"}, "an absent optional parameter drops its element"
        context = ExecutionContext(environment={"FROM_CONTEXT": "ctx"})
        env = (await ex.execute_tool(request("test-env", {}, context=context))).output
        assert "STEPFLOW_TEST_SECRET" not in env
        assert set(env) - {"LC_CTYPE"} == {"PATH", "STEPFLOW_TEST_ALLOWED", "FROM_CONTEXT"}, env
        assert env["STEPFLOW_TEST_ALLOWED"] == "allowed" and env["FROM_CONTEXT"] == "ctx"


async def test_cancel_kills_the_process_tree_before_the_execution_is_cancelled(dev_env, command_settings):
    async with running_worker(dev_env, command_settings), executor_for(dev_env, command_settings) as ex:
        execution_id = await ex.execute_tool_async(request("test-dirty", {}, timeout=timedelta(seconds=60)))
        deadline = time.monotonic() + 20
        while len(sandbox_pids()) < 2:  # the tool and its escaped grandchild `sleep 1000`
            assert time.monotonic() < deadline, "the tool never started"
            await asyncio.sleep(0.05)
        await ex.cancel_execution(execution_id)
        result = await ex.get_execution_result(execution_id)
        while not result.status.is_terminal:
            await asyncio.sleep(0.05)
            result = await ex.get_execution_result(execution_id)
        assert result.status is ExecutionStatus.CANCELLED
        assert sandbox_pids() == []


async def test_timeout_kills_the_tool_and_a_retry_starts_in_a_clean_directory(dev_env, command_settings):
    async with running_worker(dev_env, command_settings), executor_for(dev_env, command_settings) as ex:
        execution_id = await ex.execute_tool_async(
            request(
                "test-dirty",
                {},
                timeout=timedelta(seconds=5),
                retry_count=1,
                retry_delay=timedelta(milliseconds=100),
            )
        )
        result = await ex.get_execution_result(execution_id)
        while not result.status.is_terminal:
            await asyncio.sleep(0.1)
            result = await ex.get_execution_result(execution_id)
        assert result.status is ExecutionStatus.TIMED_OUT, result
        assert result.error is not None and result.error.type == "TimeoutExceeded"
        assert sandbox_pids() == []
        messages = [entry.message for entry in await ex.get_logs(execution_id)]
        assert messages.count("entries []") == 2, messages
        assert messages.count("hanging") == 2, messages


async def test_a_python_tool_with_resource_limits_is_refused(dev_env, command_settings):
    async with running_worker(dev_env, command_settings), executor_for(dev_env, command_settings) as ex:
        with pytest.raises(ResourceLimitExceeded) as raised:
            await ex.execute_tool(request("echo", {"m": 1}, resource_limits=ResourceLimits(memory_mb=64)))
        assert "Python tool" in raised.value.message
        ok = await ex.execute_tool(request("echo", {"m": 1}))
        assert ok.output == {"m": 1}

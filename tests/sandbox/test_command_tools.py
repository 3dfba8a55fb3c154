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
    settings.tool_modules = ["tests.sandbox.pytools"]
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


async def _started(ex: Any, execution_id: str) -> None:
    deadline = time.monotonic() + 20
    while not sandbox_pids() or (await ex.get_execution_status(execution_id)).value != "running":
        assert time.monotonic() < deadline, "the tool never started"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a heartbeat or so into the run


async def _cancelled_after(ex: Any, execution_id: str) -> float:
    """Cancel, then poll the status every 50 ms as a user would: seconds until it reads cancelled."""
    await ex.cancel_execution(execution_id)
    began = time.monotonic()
    status = await ex.get_execution_status(execution_id)
    while not status.is_terminal:
        await asyncio.sleep(0.05)
        status = await ex.get_execution_status(execution_id)
    assert status is ExecutionStatus.CANCELLED
    return time.monotonic() - began


async def test_a_cancel_is_prompt_for_tools_that_exit_on_sigterm_and_waits_the_grace_for_the_others(
    dev_env, command_settings
):
    """cancel_grace is 1 s here. The stubborn command also left a double-forked setsid grandchild."""
    cases = {
        "test-sleep": ({}, 0.0, 1.0),
        "py-iso-sleep": ({"seconds": 1000}, 0.0, 1.0),
        "test-stubborn": ({}, 1.0, 2.5),
        "py-iso-stubborn": ({"seconds": 1000}, 1.0, 2.5),
    }
    async with running_worker(dev_env, command_settings), executor_for(dev_env, command_settings) as ex:
        for tool_id, (parameters, at_least, at_most) in cases.items():
            execution_id = await ex.execute_tool_async(request(tool_id, parameters, timeout=timedelta(seconds=60)))
            await _started(ex, execution_id)
            seconds = await _cancelled_after(ex, execution_id)
            print(f"{tool_id}: cancelled {seconds:.2f} s after the cancel")
            assert at_least <= seconds <= at_most, (tool_id, seconds)
            assert sandbox_pids() == []


async def test_an_isolated_python_tool_through_the_worker(dev_env, command_settings):
    async with running_worker(dev_env, command_settings), executor_for(dev_env, command_settings) as ex:
        done = await ex.execute_tool(
            request("py-iso-probe", {"paths": ["/home"]}, resource_limits=ResourceLimits(memory_mb=128))
        )
        assert done.output["exists"] == {"/home": False} and done.output["uid"] >= 1_500_000
        messages = [entry.message for entry in await ex.get_logs(done.execution_id)]
        assert "probing" in messages and "printed line" in messages, messages
        metrics = {m.name: m.value for m in await ex.get_metric_rows(MetricFilter(execution_id=done.execution_id))}
        assert metrics["paths_checked"] == 1 and metrics["memory_peak_kb"] > 0, metrics
        with pytest.raises(ResourceLimitExceeded, match=r"^memory_mb"):
            await ex.execute_tool(request("py-iso-hog", {"mb": 100}))


async def test_output_larger_than_temporal_accepts_names_max_output_bytes(dev_env, command_settings):
    async with running_worker(dev_env, command_settings), executor_for(dev_env, command_settings) as ex:
        limits = ResourceLimits(max_output_bytes=5 * 2**20)
        for tool_id, options in (("test-print-mb", {"resource_limits": limits}), ("py-big-output", {})):
            with pytest.raises(ResourceLimitExceeded) as raised:
                await ex.execute_tool(request(tool_id, {"mb": 3}, **options))
            assert raised.value.message.startswith(f"max_output_bytes: the output of tool {tool_id!r} is ")
            assert "above 2080768 bytes" in raised.value.message, raised.value.message

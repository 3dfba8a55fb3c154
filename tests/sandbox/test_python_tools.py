"""Isolated Python tools (``@tool(..., isolation="sandbox")``) run in the sandbox: identity, channels, limits,
errors; and the checks made when a tool is declared or registered."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from stepflow.config import ExecutorSettings
from stepflow.errors import ConfigError, InvalidParameters, ResourceLimitExceeded
from stepflow.models import ResourceLimits
from stepflow.registry import ToolContext, ToolRegistry, tool
from stepflow.tools.loader import load_tool_file
from tests.sandbox import pytools
from tests.sandbox.helpers import requires_sandbox
from tests.sandbox.test_command_definitions import Context


class Params(BaseModel):
    pass


@requires_sandbox
async def test_an_isolated_tool_runs_as_its_own_uid_in_the_minimal_root_and_reports_through_ctx(monkeypatch):
    monkeypatch.setenv("STEPFLOW_TEST_ALLOWED", "yes")
    monkeypatch.setenv("STEPFLOW_TEST_SECRET", "never")
    ctx = Context()
    paths = ["/home", "/root/.bashrc", "/var/lib", str(Path.cwd() / "pyproject.toml"), "/usr/bin/python3"]
    output = await pytools.probe.__stepflow_tool__.run({"paths": paths}, ctx)  # type: ignore[attr-defined]
    assert output["uid"] >= 1_500_000 and output["cwd"] == "/workdir"
    assert output["exists"] == dict.fromkeys(paths[:-1], False) | {"/usr/bin/python3": True}
    assert set(output["env"]) == {"PATH", "STEPFLOW_TEST_ALLOWED", "FROM_CONTEXT"}, output["env"]
    assert output["execution_id"] == "x"
    assert ("info", "probing", {"paths": len(paths)}) in ctx.lines
    assert ("info", "printed line", {"stream": "stdout"}) in ctx.lines
    assert ctx.metrics["paths_checked"] == len(paths) and ctx.metrics["memory_peak_kb"] > 0
    assert ctx.progress == {"step": 1}


@requires_sandbox
async def test_an_isolated_tool_is_held_to_its_memory_limit_and_its_errors_keep_their_kind():
    hog = pytools.hog.__stepflow_tool__  # type: ignore[attr-defined]
    assert await hog.run({"mb": 8}, Context()) == 8
    with pytest.raises(ResourceLimitExceeded, match=r"^memory_mb: py-iso-hog reached its memory limit of 64 MiB"):
        await hog.run({"mb": 200}, Context())
    with pytest.raises(InvalidParameters, match="the probe says no"):
        await pytools.fail.__stepflow_tool__.run({}, Context())  # type: ignore[attr-defined]


async def test_in_process_tools_refuse_limits_and_point_at_the_sandbox():
    big = pytools.big_output.__stepflow_tool__  # type: ignore[attr-defined]
    with pytest.raises(ResourceLimitExceeded, match='isolation="sandbox"'):
        big.check_resource_limits(ResourceLimits(memory_mb=64))
    with pytest.raises(ResourceLimitExceeded, match=r"^max_output_bytes: the output of tool 'py-big-output' is \d+"):
        await big.run({"mb": 3}, Context())


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="isolation must be one of"):
        tool("t", isolation="vm")
    with pytest.raises(ValueError, match='need isolation="sandbox"'):
        tool("t", limits=ResourceLimits(memory_mb=1))(_function)
    with pytest.raises(ValueError, match="mounts: mount source '/home' would expose /home"):
        tool("t", isolation="sandbox", mounts=("/home",))(_function)

    async def nested(params: Params, ctx: ToolContext) -> None: ...

    with pytest.raises(TypeError, match="module-level function"):
        tool("t", isolation="sandbox")(nested)


async def _function(params: Params, ctx: ToolContext) -> None: ...


def test_tools_asking_limits_above_the_caps_are_refused_when_registered(tmp_path: Path):
    caps = ExecutorSettings(max_memory_mb=512)
    marked = tool("greedy", isolation="sandbox", limits=ResourceLimits(memory_mb=1024))(_function)
    with pytest.raises(ConfigError, match=r"'greedy' 1.0.0 .*memory_mb=1024 is above .* 512 .*MAX_MEMORY_MB"):
        ToolRegistry([marked.__stepflow_tool__], caps=caps)  # type: ignore[attr-defined]
    path = tmp_path / "greedy.toml"
    path.write_text('[[tool]]\nid = "g"\nkind = "command"\nargv = ["true"]\n[tool.limits]\ncpu_limit = 64.0\n')
    with pytest.raises(ConfigError, match=r"cpu_limit=64.0 is more than the \d+ CPUs"):
        ToolRegistry(load_tool_file(path), caps=caps)
    ToolRegistry(load_tool_file(path))  # without caps (a client listing tools) nothing is refused

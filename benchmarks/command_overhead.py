"""Per-execution overhead of running ``true`` as a command tool versus starting it directly with subprocess.

Usage::

    .venv/bin/python benchmarks/command_overhead.py [--runs 50] [--full]

Measures, one run after another (no concurrency):

- ``subprocess.run(["true"])``: the baseline;
- ``run_sandboxed(["true"])``: the sandbox layer (launcher, namespaces, read-only mounts, uid, rlimits, streams,
  working directory created and removed, /proc checks that nothing survived);
- ``CommandTool.run`` of a ``true`` tool: the above plus parameter rendering, env and limit resolution, metrics;
- with ``--full``: ``Executor.execute_tool`` of that tool through a worker on a fresh Temporal dev server (workflow,
  local activities, projection writes), next to the Python tool ``echo`` through the same path.

Needs root (the sandbox does). Prints milliseconds per execution and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stepflow.logging import configure_logging
from stepflow.models import ExecutionContext, ResourceLimits
from stepflow.sandbox import DEFAULT_LIMITS, run_sandboxed, sandbox_unavailable
from stepflow.tools.command import CommandTool, parse_command_tool

TRUE_TOOL = {"id": "true", "version": "1.0.0", "kind": "command", "argv": ["true"], "env": ["PATH"]}
ENV = {"PATH": "/usr/bin:/bin"}


class _Logger:
    def debug(self, event: str, **kw: Any) -> None: ...
    def info(self, event: str, **kw: Any) -> None: ...
    def warning(self, event: str, **kw: Any) -> None: ...
    def error(self, event: str, **kw: Any) -> None: ...


class _Context:
    """A ToolContext outside Temporal: no logs kept, metrics dropped."""

    execution_id = "benchmark"
    attempt = 1
    context = ExecutionContext()
    resource_limits = ResourceLimits()
    logger = _Logger()
    cancel_grace = 1.0

    def report_progress(self, progress: Any) -> None: ...
    def record_metric(self, name: str, value: float, unit: str | None = None) -> None: ...


async def _time(runs: int, once: Callable[[], Awaitable[Any]]) -> list[float]:
    await once()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await once()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _direct() -> None:
    subprocess.run(["true"], check=True)  # noqa: ASYNC221 - the baseline is the blocking call itself


async def _sandboxed() -> None:
    result = await run_sandboxed(["true"], ENV, DEFAULT_LIMITS)
    assert result.ok, result


def _tool() -> CommandTool:
    return parse_command_tool(dict(TRUE_TOOL), Path("<benchmark>"))


async def _full(runs: int) -> dict[str, list[float]]:
    """Through the product: a dev server, a worker, the Executor."""
    from temporalio.testing import WorkflowEnvironment

    from starter.executor import Executor
    from stepflow import search_attributes
    from stepflow.config import ExecutorSettings, TemporalSettings, load_settings
    from stepflow.converter import DATA_CONVERTER
    from stepflow.db.projection import Projection
    from stepflow.models import ExecutionRequest
    from worker.build import build_registry, build_worker

    with tempfile.TemporaryDirectory() as tmp:
        tool_file = Path(tmp) / "true.toml"
        tool_file.write_text('[[tool]]\nid = "true"\nkind = "command"\nargv = ["true"]\nenv = ["PATH"]\n')
        settings = load_settings(
            data_dir=Path(tmp),
            tool_files=[tool_file],
            executor=ExecutorSettings(heartbeat_timeout=2, cancel_grace=1),
            temporal=TemporalSettings(task_queue="benchmark"),
        )
        env = await WorkflowEnvironment.start_local(
            data_converter=DATA_CONVERTER,
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            search_attributes=search_attributes.ALL_KEYS,
        )
        try:
            registry = build_registry(settings)
            projection = await Projection.open(settings.resolved_database_url)
            await projection.writer.upsert_tools([definition.info() for definition in registry.all()])
            executor = Executor(env.client, projection, settings)
            async with build_worker(env.client, settings, registry, projection):
                found = {}
                for tool_id, parameters in (("true", {}), ("echo", {"m": 1})):

                    async def once(tool_id: str = tool_id, parameters: dict[str, Any] = parameters) -> None:
                        await executor.execute_tool(ExecutionRequest(tool_id=tool_id, parameters=parameters))

                    found[tool_id] = await _time(runs, once)
            await projection.close()
        finally:
            await env.shutdown()
    return found


def _row(name: str, samples: list[float], baseline: float) -> str:
    mean = statistics.mean(samples)
    median = statistics.median(samples)
    return f"{name:<44} {mean:9.2f} {median:9.2f} {mean / baseline:9.1f}x {mean - baseline:+10.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--full", action="store_true", help="also through a worker on a Temporal dev server")
    args = parser.parse_args()
    configure_logging(level=logging.WARNING)
    reason = sandbox_unavailable()
    if reason is not None:
        sys.exit(f"cannot benchmark the sandbox here: {reason}")
    tool, ctx = _tool(), _Context()
    results = {
        "subprocess.run(['true'])": await _time(args.runs, _direct),
        "run_sandboxed(['true'])": await _time(args.runs, _sandboxed),
        "CommandTool('true').run": await _time(args.runs, lambda: tool.run({}, ctx)),
    }
    if args.full:
        full = await _full(args.runs)
        results["execute_tool(true) via worker + dev server"] = full["true"]
        results["execute_tool(echo, Python) same path"] = full["echo"]
    baseline = statistics.mean(results["subprocess.run(['true'])"])
    print(f"{args.runs} runs each, sequential; milliseconds per execution")
    print(f"{'':<44} {'mean':>9} {'median':>9} {'ratio':>10} {'overhead':>10}")
    for name, samples in results.items():
        print(_row(name, samples, baseline))


if __name__ == "__main__":
    asyncio.run(main())

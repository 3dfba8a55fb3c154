"""Per-execution cost of the sandbox: ``true`` sandboxed against ``subprocess.run``, a Python tool in the
sandbox against the same tool in-process.

Usage::

    .venv/bin/python benchmarks/command_overhead.py [--runs 200] [--pause 0.02] [--full]

Side by side, in rounds: each round runs every method once, in turn, so that a busy machine weighs on all of
them alike. Runs are sequential (no concurrency), each after ``--pause`` seconds (a worker's executions are spread
out: the zygote refills its pool of ready sandboxes between them):

- ``subprocess.run(["true"])``: the baseline;
- ``run_sandboxed(["true"])``: the sandbox layer (a pre-built sandbox taken from the zygote, limits written to its
  cgroups, the root finished, uid, rlimits, seccomp, streams, the check that nothing survived, accounting);
- ``CommandTool.run`` of a ``true`` tool: the above plus parameter rendering, env and limit resolution, metrics;
- ``PythonTool.run`` of one echo body, in-process and with ``isolation="sandbox"``;
- with ``--full``: ``Executor.execute_tool`` of the ``true`` tool through a worker on a fresh Temporal dev server,
  next to the Python tool ``echo`` through the same path.

Needs root (the sandbox does). Prints p50 and p95 in milliseconds, and each method's p50 over its baseline's.
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
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import sandbox_tools
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


async def _rounds(
    runs: int, pause: float, methods: Mapping[str, Callable[[], Awaitable[Any]]]
) -> dict[str, list[float]]:
    """Each round runs every method once, in turn; milliseconds per run, by method."""
    for once in methods.values():  # warm-up: zygotes started, modules imported, pools filled
        await once()
    await asyncio.sleep(0.5)
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(runs):
        for name, once in methods.items():
            await asyncio.sleep(pause)
            started = time.perf_counter()
            await once()
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
            await projection.upsert_tools([definition.info() for definition in registry.all()])
            executor = Executor(env.client, projection, settings)
            async with build_worker(env.client, settings, registry, projection):
                methods = {}
                for tool_id, parameters in (("true", {}), ("echo", {"m": 1})):

                    async def once(tool_id: str = tool_id, parameters: dict[str, Any] = parameters) -> None:
                        await executor.execute_tool(ExecutionRequest(tool_id=tool_id, parameters=parameters))

                    methods[tool_id] = once
                found = await _rounds(runs, 0.0, methods)
            await projection.close()
        finally:
            await env.shutdown()
    return found


def _row(name: str, samples: list[float], baseline: list[float] | None) -> str:
    p50, p95 = statistics.median(samples), _quantile(samples, 0.95)
    over = f"{p50 - statistics.median(baseline):+10.2f}" if baseline is not None else f"{'':>10}"
    return f"{name:<46} {p50:9.2f} {p95:9.2f} {over}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between two runs")
    parser.add_argument("--full", action="store_true", help="also through a worker on a Temporal dev server")
    args = parser.parse_args()
    configure_logging(level=logging.WARNING)
    reason = sandbox_unavailable()
    if reason is not None:
        sys.exit(f"cannot benchmark the sandbox here: {reason}")
    tool, ctx = _tool(), _Context()
    in_process = sandbox_tools.echo_in_process.__stepflow_tool__  # type: ignore[attr-defined]
    sandboxed = sandbox_tools.echo_sandboxed.__stepflow_tool__  # type: ignore[attr-defined]
    results = await _rounds(
        args.runs,
        args.pause,
        {
            "subprocess.run(['true'])": _direct,
            "run_sandboxed(['true'])": _sandboxed,
            "CommandTool('true').run": lambda: tool.run({}, ctx),
            "Python tool, in-process": lambda: in_process.run({"message": "hi"}, ctx),
            "Python tool, isolation='sandbox'": lambda: sandboxed.run({"message": "hi"}, ctx),
        },
    )
    baselines = {
        "run_sandboxed(['true'])": "subprocess.run(['true'])",
        "CommandTool('true').run": "subprocess.run(['true'])",
        "Python tool, isolation='sandbox'": "Python tool, in-process",
    }
    if args.full:
        full = await _full(args.runs)
        results["execute_tool(true) via worker + dev server"] = full["true"]
        results["execute_tool(echo, Python) same path"] = full["echo"]
        baselines["execute_tool(true) via worker + dev server"] = "execute_tool(echo, Python) same path"
    print(f"{args.runs} rounds, each method once a round, {args.pause * 1000:.0f} ms apart; milliseconds per run")
    print(f"{'':<46} {'p50':>9} {'p95':>9} {'p50 over':>10}")
    for name, samples in results.items():
        base = baselines.get(name)
        print(_row(name, samples, results[base] if base else None) + (f"  ({base})" if base else ""))


if __name__ == "__main__":
    asyncio.run(main())

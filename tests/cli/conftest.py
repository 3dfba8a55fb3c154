"""Fixtures for CLI tests: the real ``stepflow`` console script run as a subprocess.

``cli(*args)`` runs ``stepflow`` with the ``STEPFLOW_*`` variables of the test's settings (the session dev
server, the test's own task queue and SQLite file), while ``cli_worker`` runs a real worker in this process.
Subprocesses are awaited with asyncio so the in-process worker keeps polling meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from stepflow.config import Settings
from tests.conftest import running_worker

STEPFLOW = str(Path(sys.executable).parent / "stepflow")


@dataclass
class CliResult:
    """Exit code and output of one ``stepflow`` run."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"stepflow {' '.join(self.args)} printed no JSON: {self}") from None


def cli_environment(settings: Settings, address: str, **extra: str) -> dict[str, str]:
    """The process environment pointing ``stepflow`` at ``settings`` and ``address`` (no stray STEPFLOW_*)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STEPFLOW_")}
    env.update(
        {
            "STEPFLOW_TEMPORAL_ADDRESS": address,
            "STEPFLOW_TEMPORAL_NAMESPACE": settings.temporal.namespace,
            "STEPFLOW_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
            "STEPFLOW_DATA_DIR": str(settings.data_dir),
            "STEPFLOW_DATABASE_URL": settings.resolved_database_url,
            "STEPFLOW_EXECUTOR_HEARTBEAT_TIMEOUT": str(settings.executor.heartbeat_timeout),
            "STEPFLOW_EXECUTOR_CANCEL_GRACE": str(settings.executor.cancel_grace),
            "STEPFLOW_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


async def run_cli(*args: str, env: dict[str, str], within: float = 60.0) -> CliResult:
    """Run ``stepflow *args`` to completion (killed after ``within`` seconds)."""
    process = await asyncio.create_subprocess_exec(
        STEPFLOW, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"stepflow {' '.join(args)} did not finish within {within}s") from None
    assert process.returncode is not None
    return CliResult(args, process.returncode, out.decode(), err.decode())


Cli = Callable[..., Awaitable[CliResult]]


@pytest.fixture
def cli_env(dev_env: WorkflowEnvironment, settings: Settings) -> dict[str, str]:
    return cli_environment(settings, dev_env.client.service_client.config.target_host)


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Cli:
    """``await cli("run", "echo", ...)`` runs the console script against the test's settings."""

    async def invoke(*args: str, within: float = 60.0, **extra_env: str) -> CliResult:
        return await run_cli(*args, env={**cli_env, **extra_env}, within=within)

    return invoke


@pytest.fixture
async def cli_worker(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[None]:
    """A real worker for the test's task queue, in this process."""
    async with running_worker(dev_env, settings):
        yield

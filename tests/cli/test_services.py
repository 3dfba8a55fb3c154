"""``stepflow dev`` as a real process on free ports: serve, run an execution against it, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from starter.cli.common import EXIT_CODES
from starter.server import free_port, port_open
from stepflow.config import Settings
from tests.cli.conftest import STEPFLOW, Cli, cli_environment, run_cli
from tests.conftest import make_settings

pytestmark = [pytest.mark.dev_server, pytest.mark.timeout(120)]


async def wait_for_port(port: int, process: asyncio.subprocess.Process, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not port_open("127.0.0.1", port):
        assert process.returncode is None, "stepflow dev exited before it listened"
        assert time.monotonic() < end, f"nothing listened on {port} within {deadline}s"
        await asyncio.sleep(0.2)


async def wait_for_worker(settings: Settings, deadline: float = 30.0) -> None:
    """The worker writes the tools table when it starts: wait for it."""
    from stepflow.db.projection import Projection

    projection = await Projection.open(settings.resolved_database_url)
    try:
        end = time.monotonic() + deadline
        while not await projection.reader.list_tools():
            assert time.monotonic() < end, "the worker of stepflow dev did not start"
            await asyncio.sleep(0.2)
    finally:
        await projection.close()


async def test_dev_serves_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    port, ui_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    env = cli_environment(settings, address, STEPFLOW_TEMPORAL_UI_PORT=str(ui_port))
    log = (tmp_path / "dev.out").open("wb")
    process = await asyncio.create_subprocess_exec(
        STEPFLOW, "dev", "--headless", env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True
    )
    try:
        await wait_for_port(port, process)
        await wait_for_worker(settings)

        result = await run_cli("run", "echo", "-p", "message=hi", "--json", env=env)
        assert result.code == 0, result
        assert result.json()["status"] == "completed"
        assert result.json()["output"] == {"message": "hi"}

        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        output = (tmp_path / "dev.out").read_text()
        assert code == 0, output
        assert f"Temporal dev server: {address}" in output
        assert "worker stopped" in output
        assert not port_open("127.0.0.1", port), "the dev server still listens after stepflow dev exited"
    finally:
        log.close()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def test_worker_exit_when_idle_finishes_work_first(cli: Cli, cli_env: dict[str, str]) -> None:
    idle_env = {**cli_env, "STEPFLOW_WORKER_POOL_IDLE_TIMEOUT": "1"}
    nothing_to_do = await run_cli("worker", "--exit-when-idle", env=idle_env, within=30)  # also registers the tools
    assert nothing_to_do.code == 0, nothing_to_do
    assert "worker idle, exiting" in nothing_to_do.stderr

    started = await cli("start", "sleep", "-p", "seconds=3", "--json")
    assert started.code == 0, started
    execution_id = started.json()["execution_id"]

    began = time.monotonic()
    worker = await run_cli("worker", "--exit-when-idle", env=idle_env, within=60)
    assert worker.code == 0, worker
    assert time.monotonic() - began >= 3, "the worker left before the execution it could run had finished"
    assert "worker idle, exiting" in worker.stderr

    result = await cli("result", execution_id, "--json")
    assert result.code == 0, result
    assert result.json()["status"] == "completed"


async def test_server_prints_addresses_serves_the_ui_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    port, ui_port = free_port(), free_port()
    env = cli_environment(settings, f"127.0.0.1:{port}", STEPFLOW_TEMPORAL_UI_PORT=str(ui_port))
    process = await asyncio.create_subprocess_exec(
        STEPFLOW,
        "server",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        await wait_for_port(port, process)
        await wait_for_port(ui_port, process)
        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        output = (await asyncio.wait_for(process.stdout.read(), 30)).decode()
        assert await asyncio.wait_for(process.wait(), 30) == 0, output
        assert f"Temporal dev server: 127.0.0.1:{port}" in output
        assert f"Temporal Web UI:     http://127.0.0.1:{ui_port}" in output
        assert (tmp_path / "data" / "temporal.db").exists(), "the server keeps its state in the data dir"
        assert not port_open("127.0.0.1", port) and not port_open("127.0.0.1", ui_port)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def test_server_refuses_a_taken_port(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = await run_cli("server", "--headless", env=cli_environment(settings, address), within=30)
    assert result.code == EXIT_CODES["InternalError"], result
    assert f"something already listens on {address}" in result.stderr

"""The suite's Temporal dev server: ``stepflow server``'s command line, headless, on a free port, in the run's dir.

``tuned=False`` drops the server settings ``stepflow server`` adds (``starter.server.DYNAMIC_CONFIG``) and runs
Temporal's defaults instead, so the suite can show what those settings do to the product and to bare Temporal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starter.server import DYNAMIC_CONFIG_ARGS, DevServer, free_port
from stepflow.config import TemporalSettings, load_settings


@dataclass(frozen=True)
class RunningServer:
    """Where the server listens, and its process (for resident memory and CPU time)."""

    address: str
    pid: int
    command: tuple[str, ...]


def without_server_settings(command: list[str]) -> list[str]:
    """``command`` without the ``--dynamic-config-value`` pairs of ``stepflow server``'s settings."""
    settings = {DYNAMIC_CONFIG_ARGS[i + 1] for i in range(0, len(DYNAMIC_CONFIG_ARGS), 2)}
    kept: list[str] = []
    skip = False
    for i, arg in enumerate(command):
        if skip:
            skip = False
            continue
        if arg == "--dynamic-config-value" and i + 1 < len(command) and command[i + 1] in settings:
            skip = True
            continue
        kept.append(arg)
    return kept


@asynccontextmanager
async def dev_server(directory: Path, *, tuned: bool = True) -> AsyncIterator[RunningServer]:
    """Start a dev server whose state lives in ``directory``; stop it on the way out."""
    settings = load_settings(data_dir=directory, temporal=TemporalSettings(address=f"127.0.0.1:{free_port()}"))
    server = DevServer(settings, headless=True, log_path=directory / "temporal-server.log")
    if not tuned:
        server.command = without_server_settings(server.command)
    try:
        await server.start_async()
        assert server.process is not None
        yield RunningServer(server.where.address, server.process.pid, tuple(server.command))
    finally:
        await asyncio.to_thread(server.stop)

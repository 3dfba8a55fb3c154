"""The inside of an isolated Python tool: its process runs the tool function and talks to the worker in JSON lines.

The tool runs in the sandbox's init, a fork of the ``python`` zygote (which has the tool's module imported),
confined like a command tool's process (own uid, namespaces, cgroup, rlimits, seccomp, minimal root, working
directory) but running the tool's async function instead of exec'ing a program. Its parameters, identity and
limits come in the run's spec; everything it sends back goes through the channel pipe, one JSON object a line:

- ``{"log": [level, event, {key: value}]}`` for each ``ctx.logger.<level>(event, **kw)``;
- ``{"progress": value}`` for ``ctx.report_progress(value)``; ``{"metric": [name, value, unit]}`` for
  ``ctx.record_metric``;
- finally ``{"result": output}``, ``{"error": {"type": kind, "message": text}}`` or ``{"cancelled": true}``.

What it prints goes to stdout/stderr and becomes log lines like a command tool's output. ``SIGTERM`` (a cancel or
a timeout) cancels the tool's task: it gets ``asyncio.CancelledError`` and its ``finally`` blocks run; a tool
blocked in synchronous code is killed after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import resource
import signal
import sys
import threading
import traceback
from typing import Any, NoReturn

CANCELLED_EXIT = 128 + signal.SIGTERM


PRELOADED = ("pydantic_core", "stepflow.errors", "stepflow.models", "stepflow.registry")
"""Imported in the zygote, by name, ahead of any tool: what every isolated tool needs."""


def warm_up() -> None:
    """Import in the zygote what every isolated tool needs, so that no tool's process imports it again."""
    for name in PRELOADED:
        importlib.import_module(name)


_loop: asyncio.AbstractEventLoop | None = None


def prepare() -> None:
    """In a launcher's init, ahead of any request: the event loop the tool will run in (0.5 ms less per run)."""
    global _loop
    _loop = asyncio.new_event_loop()


def preload(python: dict[str, Any]) -> bool:
    """Import the tool's module (in the init, while the host's file system is still visible); True when it was
    not imported yet."""
    if python["module"] in sys.modules:
        return False
    importlib.import_module(python["module"])
    return True


class _Channel:
    """JSON lines to the worker; a lock keeps lines from several threads whole."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, default=str) + "\n").encode()
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]


class ChannelLogger:
    """``ctx.logger``: structlog-style methods whose lines reach the execution's logs."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def _log(self, level: str, event: str, kw: dict[str, Any]) -> None:
        self._channel.send({"log": [level, str(event), kw]})

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, kw)

    warn = warning

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._log("error", event, {**kw, "exception": traceback.format_exc()})


class ChannelContext:
    """The ToolContext of an isolated tool: identity from the spec, everything else through the channel."""

    def __init__(self, python: dict[str, Any], channel: _Channel) -> None:
        from stepflow.models import ExecutionContext, ResourceLimits

        self._python = python
        self._channel = channel
        self._context = ExecutionContext.model_validate(python["context"])
        self._limits = ResourceLimits.model_validate(python["resource_limits"])
        self._logger = ChannelLogger(channel)

    @property
    def execution_id(self) -> str:
        return str(self._python["execution_id"])

    @property
    def attempt(self) -> int:
        return int(self._python["attempt"])

    @property
    def context(self) -> Any:
        return self._context

    @property
    def resource_limits(self) -> Any:
        return self._limits

    @property
    def logger(self) -> ChannelLogger:
        return self._logger

    @property
    def cancel_grace(self) -> float:
        return float(self._python["cancel_grace"])

    def report_progress(self, progress: Any) -> None:
        self._channel.send({"progress": progress})

    def record_metric(self, name: str, value: float, unit: str | None = None) -> None:
        self._channel.send({"metric": [name, float(value), unit]})


async def _call(definition: Any, parameters: Any, ctx: ChannelContext) -> Any:
    task = asyncio.ensure_future(definition.function(parameters, ctx))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


def _outcome(python: dict[str, Any], channel: _Channel) -> tuple[dict[str, Any], int]:
    import pydantic_core

    from stepflow.errors import ExecutorError

    module = sys.modules[python["module"]]
    definition = getattr(module, python["function"]).__stepflow_tool__
    ctx = ChannelContext(python, channel)
    try:
        parameters = definition.input_model.model_validate(python["parameters"])
        loop = _loop or asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        output = loop.run_until_complete(_call(definition, parameters, ctx))
        return {"result": json.loads(pydantic_core.to_json(output))}, 0
    except asyncio.CancelledError:
        return {"cancelled": True}, CANCELLED_EXIT
    except ExecutorError as error:
        return {"error": {"type": error.kind, "message": error.message}}, 1
    except Exception as error:
        traceback.print_exc()
        return {"error": {"type": "ExecutionFailed", "message": f"{type(error).__name__}: {error}"}}, 1


def run(python: dict[str, Any], env: dict[str, str], channel_fd: int, status_fd: int) -> NoReturn:
    """Run the tool named in ``python`` with the run's environment, as the sandbox's init; report on the channel
    and the status pipe; kill what the tool left behind; exit."""
    from stepflow.sandbox.initproc import reap, report

    os.environ.clear()
    os.environ.update(env)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    channel = _Channel(channel_fd)
    code = 1
    try:
        message, code = _outcome(python, channel)
        channel.send(message)
    except BaseException as error:  # the tool's output could not even be encoded: say so, never hang
        with contextlib.suppress(BaseException):
            channel.send({"error": {"type": "ExecutionFailed", "message": f"{type(error).__name__}: {error}"}})
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(BaseException):
            os.close(channel_fd)
            reap(None)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            report(status_fd, {"exit": code, "signal": None, "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000})
        os._exit(code)

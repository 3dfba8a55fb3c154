"""What a running tool sees: the ToolContext it is given and the logger on it.

Every kind of tool gets the same context, in the worker or in the sandbox: who it runs for, its limits, a logger
whose lines reach the execution's log, progress reporting (sent with the heartbeats) and metrics. The worker's
implementation is :class:`activities.tool_context.ActivityToolContext`. ``stepflow.registry`` exports both
protocols too, beside ``@tool``.
"""

from __future__ import annotations

from typing import Any, Protocol

from stepflow.models import ExecutionContext, ResourceLimits


class ToolLogger(Protocol):
    """What a tool logs through: structlog-style methods with keyword context."""

    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


class ToolContext(Protocol):
    """What a running tool may use: who it runs for, a logger, and progress reporting (heartbeats)."""

    @property
    def execution_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def context(self) -> ExecutionContext: ...
    @property
    def resource_limits(self) -> ResourceLimits: ...
    @property
    def logger(self) -> ToolLogger: ...
    @property
    def cancel_grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL when a subprocess must be stopped."""
        ...

    def report_progress(self, progress: Any) -> None:
        """Record the tool's progress; it is sent with the next heartbeat and shown by ``status``."""

    def record_metric(self, name: str, value: float, unit: str | None = None) -> None:
        """Record a measurement of this attempt (``cpu_time_ms``, ``max_rss_kb``...) for execution_metrics."""

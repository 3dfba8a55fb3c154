"""The ToolContext a tool sees while it runs inside the ``run_tool`` activity."""

from __future__ import annotations

from typing import Any

import structlog

from stepflow.models import ExecutionContext, ResourceLimits, RunToolInput


class ActivityToolContext:
    """Identity, a bound logger and progress for one attempt of one execution."""

    def __init__(self, run: RunToolInput, attempt: int, *, cancel_grace: float = 5.0) -> None:
        self._run = run
        self._attempt = attempt
        self._cancel_grace = cancel_grace
        self.progress: Any = None
        self.metrics: list[tuple[str, float, str | None]] = []
        self._logger = structlog.get_logger("stepflow.tool").bind(
            execution_id=run.execution_id, tool_id=run.tool_id, version=run.version, attempt=attempt
        )

    @property
    def execution_id(self) -> str:
        return self._run.execution_id

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def context(self) -> ExecutionContext:
        return self._run.context

    @property
    def resource_limits(self) -> ResourceLimits:
        return self._run.resource_limits

    @property
    def logger(self) -> Any:
        return self._logger

    @property
    def cancel_grace(self) -> float:
        return self._cancel_grace

    def report_progress(self, progress: Any) -> None:
        self.progress = progress

    def record_metric(self, name: str, value: float, unit: str | None = None) -> None:
        self.metrics.append((name, value, unit))

"""The ToolContext a tool sees while it runs inside the ``run_and_record`` activity, and the attempt's log buffer.

Every line a tool logs through ``ctx.logger`` (structlog-style: ``ctx.logger.info("event", key=value)``) goes
to the worker's structlog output and into an :class:`AttemptLog`: a bounded in-memory buffer the activity
flushes to ``execution_logs`` periodically and at the end of the attempt. Lines below the request's
``logging_level`` are dropped. Each line gets a deterministic ``metadata.seq`` (``"<attempt>.<n>"``, or
``"<attempt>r<rerun>.<n>"`` when the attempt runs again after its worker was lost) so a
retried flush never duplicates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from stepflow.models import ExecutionContext, ExecutionRequest, JsonDict, LogEntry, LogLevel, Metric, ResourceLimits

MAX_MESSAGE_CHARS = 8_192


@dataclass(frozen=True)
class ToolRun:
    """One execution's run of its tool: the resolved version, validated parameters and the retry plan."""

    execution_id: str
    request: ExecutionRequest
    version: str
    parameters: JsonDict
    retry_delay_ms: int = 0
    max_attempts: int = 1
    attempts_before: int = 0
    """Tool attempts that earlier runs of the activity used up: attempt N of this run is the tool's N + this."""
    rerun: int = 0
    """How many times the activity has run again after a lost worker (0: the first run)."""

    def tool_attempt(self, activity_attempt: int) -> int:
        """The tool's attempt number (1 + earlier tool failures) of this run's ``activity_attempt``."""
        return self.attempts_before + activity_attempt

    @property
    def tool_id(self) -> str:
        return self.request.tool_id

    @property
    def context(self) -> ExecutionContext:
        return self.request.context

    @property
    def resource_limits(self) -> ResourceLimits:
        return self.request.options.resource_limits

    @property
    def logging_level(self) -> LogLevel:
        return self.request.options.logging_level


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return str(value)


class AttemptLog:
    """The lines of one attempt waiting to be written, bounded.

    At most ``max_lines`` lines are kept per attempt and at most ``max_pending`` wait unflushed; beyond
    either bound lines are counted as dropped (and a summary line says so) instead of exhausting memory.
    ``flush_at`` pending lines make :attr:`wants_flush` true so the activity flushes early.
    """

    def __init__(
        self,
        run: ToolRun,
        attempt: int,
        *,
        max_lines: int = 10_000,
        max_pending: int = 2_000,
        flush_at: int = 200,
    ) -> None:
        self._run = run
        self.attempt = attempt
        self._label = str(attempt) if run.rerun == 0 else f"{attempt}r{run.rerun}"
        self._keep = run.logging_level.rank
        self._max_lines = max_lines
        self._max_pending = max_pending
        self._flush_at = flush_at
        self._pending: list[LogEntry] = []
        self._count = 0
        self.dropped = 0
        self._out = structlog.get_logger("stepflow.tool").bind(
            execution_id=run.execution_id, tool_id=run.tool_id, version=run.version, attempt=attempt
        )

    def keeps(self, level: LogLevel) -> bool:
        return level.rank >= self._keep

    @property
    def wants_flush(self) -> bool:
        return len(self._pending) >= self._flush_at

    def add(self, level: LogLevel, message: str, /, **context: Any) -> None:
        """Log one line (to structlog and the buffer) if the level is kept."""
        if not self.keeps(level):
            return
        getattr(self._out, level.value)(message, **{k: v for k, v in context.items() if k != "event"})
        if self._count >= self._max_lines or len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._count += 1
        self._pending.append(self._entry(level, message, f"{self._label}.{self._count}", context))

    def add_drop_summary(self) -> None:
        """Append (past the bounds) one line saying how many lines were dropped, if any."""
        if self.dropped:
            message = f"{self.dropped} log lines dropped (at most {self._max_lines} kept per attempt)"
            self._out.warning(message)
            self._pending.append(self._entry(LogLevel.WARNING, message, f"{self._label}.dropped", {}))

    def _entry(self, level: LogLevel, message: str, seq: str, context: dict[str, Any]) -> LogEntry:
        metadata = {key: _jsonable(value) for key, value in context.items()}
        metadata.update(seq=seq, attempt=self.attempt, tool_id=self._run.tool_id, version=self._run.version)
        return LogEntry(
            execution_id=self._run.execution_id,
            level=level,
            message=message[:MAX_MESSAGE_CHARS],
            timestamp=datetime.now(UTC),
            metadata=metadata,
        )

    def take(self) -> list[LogEntry]:
        """Hand over the pending lines (the caller writes them or gives them back)."""
        taken, self._pending = self._pending, []
        return taken

    def give_back(self, entries: list[LogEntry]) -> None:
        """Put lines that could not be written back at the front (bounded)."""
        room = max(0, self._max_pending - len(self._pending))
        self.dropped += max(0, len(entries) - room)
        self._pending = entries[:room] + self._pending


class AttemptLogger:
    """The structlog-style logger a tool gets as ``ctx.logger``."""

    def __init__(self, log: AttemptLog) -> None:
        self._log = log

    def debug(self, event: str, **kw: Any) -> None:
        self._log.add(LogLevel.DEBUG, event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log.add(LogLevel.INFO, event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log.add(LogLevel.WARNING, event, **kw)

    warn = warning

    def error(self, event: str, **kw: Any) -> None:
        self._log.add(LogLevel.ERROR, event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._log.add(LogLevel.ERROR, event, **kw)


class ActivityToolContext:
    """Identity, a logger writing to execution_logs, progress and metrics for one attempt of one execution."""

    def __init__(self, run: ToolRun, attempt: int, *, cancel_grace: float = 5.0) -> None:
        self._run = run
        self._attempt = attempt
        self._cancel_grace = cancel_grace
        self.progress: Any = None
        self.metrics: list[Metric] = []
        self.log = AttemptLog(run, attempt)
        self._logger = AttemptLogger(self.log)

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
    def logger(self) -> AttemptLogger:
        return self._logger

    @property
    def cancel_grace(self) -> float:
        return self._cancel_grace

    def report_progress(self, progress: Any) -> None:
        self.progress = progress

    def record_metric(self, name: str, value: float, unit: str | None = None) -> None:
        self.metrics.append(Metric(name=name, value=value, unit=unit))

"""Checking a request against the registry and the engine's caps, shared by both ways an execution starts.

``prepare_execution`` (the local activity of a composite) and ``run_and_record`` (the one activity of an
atomic tool's execution) resolve and validate a request the same way, and record the same "validated" /
"validation failed: ..." lifecycle line. The caps are the ones the Executor checked at submission
(:mod:`stepflow.request_checks`), applied again with this worker's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from stepflow.config import ExecutorSettings
from stepflow.errors import InvalidParameters, ResourceLimitExceeded
from stepflow.models import ErrorInfo, ExecutionRequest, JsonDict, LogEntry, LogLevel
from stepflow.registry import ToolDefinition, ToolRegistry
from stepflow.request_checks import check_caps


@dataclass(frozen=True)
class CheckedRequest:
    """A resolved request: its tool, its normalised parameters, or why it is invalid, and the line to record."""

    definition: ToolDefinition
    parameters: JsonDict
    invalid: ErrorInfo | None
    line: LogEntry | None  # None when the request's logging level drops it


def check_request(
    registry: ToolRegistry, caps: ExecutorSettings, execution_id: str, request: ExecutionRequest
) -> CheckedRequest:
    """Resolve the tool (ToolNotFound is raised: there is no row to record it on), then check the request.

    Invalid parameters or resource limits are returned as ``invalid``, so the caller records them.
    """
    definition = registry.resolve(request.tool_id, request.version)
    invalid: ErrorInfo | None = None
    parameters: JsonDict = {}
    try:
        check_caps(caps, request)
        parameters = definition.validate_parameters(request.parameters)
        definition.check_resource_limits(request.options.resource_limits)
    except (InvalidParameters, ResourceLimitExceeded) as problem:
        invalid = ErrorInfo(type=problem.kind, message=problem.message)
    level, message = (
        (LogLevel.INFO, "validated") if invalid is None else (LogLevel.ERROR, f"validation failed: {invalid.message}")
    )
    line = None
    if level.rank >= request.options.logging_level.rank:
        line = LogEntry(
            execution_id=execution_id,
            level=level,
            message=message,
            timestamp=datetime.now(UTC),
            metadata={"seq": "prepare", "tool_id": definition.id, "version": definition.version, "attempt": 0},
        )
    return CheckedRequest(definition, parameters, invalid, line)

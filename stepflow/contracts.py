"""Workflow and activity contracts: the inputs and outputs that Temporal records in execution histories.

Everything here is serialized into histories by the pydantic data converter, so its shape is part of what a
recorded history must replay against: add fields with defaults, never rename or remove one without a
``workflow.patched()`` path and a replay test of the history recorded before the change. The models forbid
unknown fields, so a worker older than its starter fails the workflow task instead of running an input it does
not understand. The public models these carry (requests, results) are in :mod:`stepflow.models`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stepflow.models import (
    ErrorInfo,
    ExecutionContext,
    ExecutionRequest,
    ExecutionStatus,
    JsonDict,
    LogLevel,
    Priority,
    ResourceLimits,
)


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowRuntimeOptions(_Contract):
    """Engine settings a workflow needs, resolved from config by the starter (workflows read no config)."""

    default_timeout: timedelta
    default_retry_delay: timedelta
    max_retry_count: int
    heartbeat_timeout: timedelta
    cancel_grace: timedelta = timedelta(seconds=5)


class ToolExecutionInput(_Contract):
    """Input of ToolExecutionWorkflow: the request plus the engine settings it runs under."""

    execution_id: str
    request: ExecutionRequest
    runtime: WorkflowRuntimeOptions
    kind: str | None = Field(
        default=None,
        description="The tool's kind as the starter found it in the tools table. A known kind other than "
        "composite lets the workflow validate, run and record the execution in one activity (run_and_record).",
    )


class RunToolInput(_Contract):
    """Input of the ``run_tool`` activity."""

    execution_id: str
    tool_id: str
    version: str
    parameters: JsonDict
    context: ExecutionContext
    resource_limits: ResourceLimits
    logging_level: LogLevel = LogLevel.INFO
    retry_delay_ms: int = 0
    max_attempts: int = 1

    @classmethod
    def for_request(
        cls,
        execution_id: str,
        request: ExecutionRequest,
        *,
        version: str,
        parameters: JsonDict,
        retry_delay_ms: int,
        max_attempts: int,
    ) -> RunToolInput:
        """The run of ``request``'s tool at the resolved ``version`` with its validated ``parameters``."""
        return cls(
            execution_id=execution_id,
            tool_id=request.tool_id,
            version=version,
            parameters=parameters,
            context=request.context,
            resource_limits=request.options.resource_limits,
            logging_level=request.options.logging_level,
            retry_delay_ms=retry_delay_ms,
            max_attempts=max_attempts,
        )


class RecordStartInput(_Contract):
    """Input of the activity that validates a request and writes its ``executions`` row."""

    execution_id: str
    request: ExecutionRequest
    start_time: datetime


class RunAndRecordInput(_Contract):
    """Input of the ``run_and_record`` activity: the whole request, resolved and validated by the activity."""

    execution_id: str
    request: ExecutionRequest
    start_time: datetime
    retry_delay_ms: int = 0
    max_attempts: int = 1


class RecordedRun(_Contract):
    """Result of ``run_and_record``: the tool's output, the version that ran and the recorded end time.

    ``recorded`` is False when the terminal row could not be committed in time (database unavailable): the
    workflow then records it with ``finish_execution``, which retries until the database is back.
    """

    version: str
    output: Any = None
    end_time: datetime
    recorded: bool


class RecordEndInput(_Contract):
    """Input of the activity that writes an execution's terminal state."""

    execution_id: str
    status: ExecutionStatus
    output: Any = None
    error: ErrorInfo | None = None
    end_time: datetime
    start: RecordStartInput | None = Field(
        default=None, description="Set on the one-activity path: the row is inserted first if it is missing."
    )


class FailurePolicy(StrEnum):
    """What a composite does when a step fails: cancel the running siblings, or let the others finish."""

    FAIL_FAST = "fail_fast"
    CONTINUE = "continue"


class CompositeStep(_Contract):
    """One step of a composite tool: a tool run as a child execution, with parameter templates."""

    id: str
    tool_id: str
    version: str | None = None
    parameters: JsonDict = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list, description="Explicit plus implied by references.")
    timeout: timedelta | None = None
    retry_count: int | None = Field(default=None, ge=0)
    priority: Priority | None = None


class CompositePlan(_Contract):
    """The step graph of a composite tool (validated at registration), run by ToolExecutionWorkflow."""

    failure_policy: FailurePolicy = FailurePolicy.FAIL_FAST
    steps: list[CompositeStep]
    output: Any = Field(default=None, description="Output template; None: a dict of every step's output.")


class PreparedExecution(_Contract):
    """What ``prepare_execution`` found: the resolved version and kind, normalised parameters or an error."""

    version: str
    kind: str
    parameters: JsonDict = Field(default_factory=dict)
    error: ErrorInfo | None = None
    plan: CompositePlan | None = Field(default=None, description="The steps, when the tool is a composite.")

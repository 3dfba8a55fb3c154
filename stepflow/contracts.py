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

from stepflow.identity import Principal
from stepflow.models import ErrorInfo, ExecutionRequest, ExecutionResult, JsonDict, Priority


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


COMPOSITE = "composite"
"""The kind of tool that ToolExecutionWorkflow runs as child executions; every other kind is one activity."""

WORKER_SHUTDOWN = "WorkerShutdown"
"""The ApplicationError type of an attempt cut short by its worker's shutdown (details: the run's attempt)."""


class SchedulingOptions(_Contract):
    """How an execution's priority and tenant become Temporal's priority and fairness keys."""

    priority_levels: int = Field(default=5, ge=1, le=5, description="STEPFLOW_SCHEDULER_PRIORITY_LEVELS")
    send_priority: bool = Field(default=True, description="STEPFLOW_SCHEDULER_ENABLE_PRIORITY_QUEUE")
    send_fairness: bool = Field(default=True, description="STEPFLOW_SCHEDULER_ENABLE_FAIR_SCHEDULING")


class WorkflowRuntimeOptions(_Contract):
    """Engine settings a workflow needs, resolved from config by the starter (workflows read no config)."""

    default_timeout: timedelta
    default_retry_delay: timedelta
    max_retry_count: int
    heartbeat_timeout: timedelta
    cancel_grace: timedelta = timedelta(seconds=5)
    scheduling: SchedulingOptions = Field(default_factory=SchedulingOptions)
    max_infrastructure_retries: int = Field(default=3, ge=0, description="STEPFLOW_EXECUTOR_MAX_INFRASTRUCTURE_RETRIES")


class ToolExecutionInput(_Contract):
    """Input of ToolExecutionWorkflow: the request, the tool's kind and the engine settings it runs under."""

    execution_id: str
    request: ExecutionRequest
    runtime: WorkflowRuntimeOptions
    kind: str | None = Field(
        description="The tool's kind as the starter found it: composite, or an atomic kind; None when the starter "
        "could not read the tools table (the workflow then asks the worker, with resolve_tool)."
    )
    idempotent: bool = Field(default=True, description="The tool may run again after its worker was lost.")
    principal: Principal | None = Field(
        default=None, description="Who started it: a composite checks its steps' tools against it (inherited)."
    )


class RunAndRecordInput(_Contract):
    """Input of the ``run_and_record`` activity: the whole request, resolved and validated by the activity."""

    execution_id: str
    request: ExecutionRequest
    start_time: datetime
    retry_delay_ms: int = 0
    max_attempts: int = Field(default=1, description="Tool attempts in all (1 + retry_count), over every run.")
    attempts_before: int = Field(default=0, description="Tool attempts earlier runs of this activity used up.")
    rerun: int = Field(default=0, description="How many times the activity ran again after a lost worker.")


class RecordedRun(_Contract):
    """Result of ``run_and_record``: the tool's output, the version that ran and the recorded end time.

    ``recorded`` is False when the terminal row could not be committed in time (database unavailable), or when
    an earlier try may have written another end (a run after a lost worker, an attempt after the first): the
    workflow then records it with ``finish_execution``, which retries until the database is back and
    overwrites whatever end the row holds.
    """

    version: str
    output: Any = None
    end_time: datetime
    recorded: bool


class ResolvedTool(_Contract):
    """Result of ``resolve_tool``: what the worker's registry says the requested tool is."""

    kind: str
    idempotent: bool


class PrepareInput(_Contract):
    """Input of ``prepare_execution``: a composite's request, the start its row records, who started it."""

    execution_id: str
    request: ExecutionRequest
    start_time: datetime
    principal: Principal | None = Field(default=None, description="Its steps' tools are checked against it.")


class FinishInput(_Contract):
    """Input of ``finish_execution``: the request (for a row that was never written) and how it ended."""

    request: ExecutionRequest
    result: ExecutionResult


class FailurePolicy(StrEnum):
    """What a composite does when a step fails: cancel the running siblings, or let the others finish."""

    FAIL_FAST = "fail_fast"
    CONTINUE = "continue"


class CompositeStep(_Contract):
    """One step of a composite tool: a tool run as a child execution, with parameter templates."""

    id: str
    tool_id: str
    version: str | None = None
    kind: str | None = Field(default=None, description="The step tool's kind, filled in by validate_composites.")
    idempotent: bool = Field(default=True, description="Whether the step's tool is, filled in likewise.")
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
    """What ``prepare_execution`` found: the resolved version, normalised parameters and plan, or an error."""

    version: str
    kind: str
    parameters: JsonDict = Field(default_factory=dict)
    error: ErrorInfo | None = None
    plan: CompositePlan | None = Field(default=None, description="The steps, when the tool is a composite.")

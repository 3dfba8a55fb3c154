"""The spec's public data shapes, as pydantic models: what callers send and get back.

Request, context, options, limits, status, result, metadata, progress, list filters and infos, log lines,
metrics. They travel through the Executor, the CLI's ``--json`` and the SQL projection (as JSON), and inside
workflow inputs and results; they hold data only, so the deterministic workflow code may import them. The
workflow and activity inputs/outputs that histories record are in :mod:`stepflow.contracts`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from stepflow import constraints
from stepflow.constraints import MAX_PARAMETERS_DEPTH, MAX_RETRY_DELAY, MAX_TIMEOUT

JsonDict = dict[str, Any]

ToolId = Annotated[str, AfterValidator(constraints.check_tool_id)]
ToolVersion = Annotated[str, AfterValidator(constraints.check_version)]
TenantId = Annotated[str, AfterValidator(constraints.check_tenant_id)]
ExecutionId = Annotated[str, AfterValidator(constraints.check_execution_id)]


class ExecutionStatus(StrEnum):
    """Lifecycle of one execution. The last four are terminal and never change once written."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.TIMED_OUT,
    }
)


class Priority(StrEnum):
    """Execution priority, mapped onto Temporal's ``priority_key`` (see :mod:`stepflow.workflow_start`)."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class LogLevel(StrEnum):
    """Minimum level of the log lines an execution keeps."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"debug": 10, "info": 20, "warning": 30, "error": 40}[self.value]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceLimits(_Model):
    """Per-execution limits. ``None`` means "no limit beyond the configured maximum"."""

    memory_mb: int | None = Field(default=None, gt=0, description="Memory limit in MiB (resident where cgroups allow).")
    cpu_limit: float | None = Field(default=None, gt=0, description="CPU share in cores (0.5 = half a core).")
    cpu_seconds: int | None = Field(default=None, gt=0, description="CPU time limit in seconds.")
    max_processes: int | None = Field(default=None, gt=0, description="Process count limit.")
    max_output_bytes: int | None = Field(default=None, gt=0, description="Output size limit in bytes.")
    network: bool = Field(default=False, description="Allow network access (command tools).")

    @property
    def is_empty(self) -> bool:
        return (
            self.memory_mb is None
            and self.cpu_limit is None
            and self.cpu_seconds is None
            and self.max_processes is None
            and self.max_output_bytes is None
        )


class ExecutionContext(_Model):
    """Who runs the execution and on whose behalf (ids checked as :mod:`stepflow.constraints` says)."""

    user_id: str = Field(default="anonymous", description="Printable text, 1 to 200 characters.")
    tenant_id: TenantId = Field(default="default", description="ASCII letters, digits and ._@:-, 1 to 64.")
    session_id: str = Field(default="", description="Printable text, at most 200 characters.")
    request_id: str = Field(default="", description="Idempotency key within the tenant; printable, at most 200.")
    parent_execution_id: ExecutionId | None = None
    environment: dict[str, str] = Field(default_factory=dict, description="Extra variables of a command tool.")

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        return constraints.check_text_id(value, required=True)

    @field_validator("session_id", "request_id")
    @classmethod
    def _optional_ids(cls, value: str) -> str:
        return constraints.check_text_id(value, required=False)

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        constraints.check_environment(value)
        return value


class ExecutionOptions(_Model):
    """How to run: timeout per attempt, retries, priority, limits and kept log level.

    A number given for ``timeout`` or ``retry_delay`` is seconds; either must be finite and at most
    :data:`~stepflow.constraints.MAX_TIMEOUT` / :data:`~stepflow.constraints.MAX_RETRY_DELAY`. ``retry_count``
    is capped by ``STEPFLOW_EXECUTOR_MAX_RETRY_COUNT``: above it the request is refused (see
    :mod:`stepflow.request_checks`).
    """

    timeout: timedelta | None = Field(
        default=None, description=f"Per-attempt timeout, above 0 and at most {MAX_TIMEOUT}; config default if unset."
    )
    retry_count: int = Field(default=0, ge=0, description="Retries after the first attempt.")
    retry_delay: timedelta | None = Field(
        default=None,
        description=f"Delay before the first retry (doubling after), at most {MAX_RETRY_DELAY}; config default if "
        "unset.",
    )
    priority: Priority = Priority.NORMAL
    resource_limits: ResourceLimits = Field(default_factory=ResourceLimits)
    logging_level: LogLevel = LogLevel.INFO

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout_in_range(cls, value: Any) -> Any:
        return constraints.duration_seconds(value, maximum=MAX_TIMEOUT, zero_allowed=False)

    @field_validator("timeout")
    @classmethod
    def _parsed_timeout_in_range(cls, value: timedelta | None) -> timedelta | None:
        return constraints.duration_seconds(value, maximum=MAX_TIMEOUT, zero_allowed=False)

    @field_validator("retry_delay", mode="before")
    @classmethod
    def _delay_in_range(cls, value: Any) -> Any:
        return constraints.duration_seconds(value, maximum=MAX_RETRY_DELAY, zero_allowed=True)

    @field_validator("retry_delay")
    @classmethod
    def _parsed_delay_in_range(cls, value: timedelta | None) -> timedelta | None:
        return constraints.duration_seconds(value, maximum=MAX_RETRY_DELAY, zero_allowed=True)


class ExecutionRequest(_Model):
    """A request to run one tool: the spec's ExecutionRequest.

    ``parameters`` must be JSON (finite numbers, valid Unicode, string keys), nested at most
    :data:`~stepflow.constraints.MAX_PARAMETERS_DEPTH` levels; their size is capped by
    ``STEPFLOW_EXECUTOR_MAX_PARAMETERS_BYTES`` and they are checked against the tool's schema when the request
    is submitted (:mod:`stepflow.request_checks`).
    """

    tool_id: ToolId = Field(description="Letters, digits and ._-, 1 to 200, starting with a letter or digit.")
    version: ToolVersion | None = Field(default=None, description="Tool version; latest when omitted.")
    parameters: JsonDict = Field(
        default_factory=dict, description=f"JSON, nested at most {MAX_PARAMETERS_DEPTH} levels."
    )
    context: ExecutionContext = Field(default_factory=ExecutionContext)
    options: ExecutionOptions = Field(default_factory=ExecutionOptions)

    @field_validator("parameters")
    @classmethod
    def _json_parameters(cls, value: JsonDict) -> JsonDict:
        problem = constraints.json_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class ErrorInfo(_Model):
    """A typed error as it is reported to callers: the spec's error kind and a message."""

    type: str
    message: str


class ExecutionTiming(_Model):
    """When the execution started and ended, and how long it took."""

    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_ms: int | None = None


class ExecutionMetadata(_Model):
    """What ran and for whom. (Attempts are in ``execution_metrics`` and in the live progress.)"""

    # results recorded by earlier versions carried an always-zero ``attempts``: read them, drop it
    model_config = ConfigDict(extra="ignore")

    tool_id: str
    version: str | None = None
    tenant_id: str = "default"
    user_id: str = "anonymous"
    session_id: str = ""
    parent_execution_id: str | None = None

    @classmethod
    def for_request(cls, request: ExecutionRequest, version: str | None) -> ExecutionMetadata:
        """Who runs what, as the request says, with the version that ran (or was asked for)."""
        context = request.context
        return cls(
            tool_id=request.tool_id,
            version=version,
            tenant_id=context.tenant_id,
            user_id=context.user_id,
            session_id=context.session_id,
            parent_execution_id=context.parent_execution_id,
        )


class ExecutionResult(_Model):
    """The outcome of an execution: the spec's ExecutionResult, plus the typed error when it did not complete."""

    execution_id: str
    status: ExecutionStatus
    output: Any = None
    error: ErrorInfo | None = None
    metadata: ExecutionMetadata
    timing: ExecutionTiming = Field(default_factory=ExecutionTiming)


class ExecutionProgress(_Model):
    """Live state of a running execution as Temporal reports it."""

    execution_id: str
    status: ExecutionStatus
    attempt: int | None = None
    progress: Any = None
    last_failure: str | None = None


class ExecutionFilter(_Model):
    """Filter for :meth:`Executor.list_executions`, answered from the SQL projection."""

    tool_id: str | None = None
    tenant_id: str | None = None
    user_id: str | None = None
    status: ExecutionStatus | None = None
    parent_execution_id: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    limit: int = Field(default=100, gt=0, le=10_000)

    @field_validator("tool_id", "tenant_id", "user_id", "parent_execution_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return constraints.check_filter_text(value)


class ExecutionInfo(_Model):
    """One row of the ``executions`` table, as listed."""

    execution_id: str
    tool_id: str
    version: str | None
    status: ExecutionStatus
    user_id: str
    tenant_id: str
    session_id: str
    parent_execution_id: str | None
    start_time: datetime
    end_time: datetime | None
    duration_ms: int | None
    error_message: str | None


class ToolInfo(_Model):
    """A registered tool: id, version (the latest, when read from the tools table), kind, parameter schema."""

    id: str
    version: str
    kind: str | None = Field(default="python", description="python, command or composite; None: not known here.")
    description: str = ""
    parameters_schema: JsonDict = Field(default_factory=dict)
    versions: list[str] = Field(default_factory=list, description="Every registered version, oldest first.")
    idempotent: bool = Field(default=True, description="Safe to run again after its worker was lost mid-run.")


class ToolGrant(_Model):
    """A tenant's users (``user:<id>``) or a role (``role:<role>``) may run a tool (``*``: every tool)."""

    tenant_id: str = Field(min_length=1, max_length=64)
    tool_id: str = Field(min_length=1, max_length=200, description="A tool id, or * for every tool.")
    subject: str = Field(pattern=r"^(user:[^\x00-\x1f\x7f]{1,200}|role:(admin|member|viewer))$")
    created_at: datetime | None = None


class LogEntry(_Model):
    """One row of ``execution_logs``: a tool's log line or an engine lifecycle event."""

    execution_id: str
    level: LogLevel
    message: str
    timestamp: datetime
    metadata: JsonDict = Field(default_factory=dict)
    id: int | None = None


class Metric(_Model):
    """One measurement of an execution (a row of ``execution_metrics``), with its unit."""

    name: str = Field(min_length=1, max_length=200)
    value: float
    unit: str | None = None
    execution_id: str | None = None
    timestamp: datetime | None = None


class MetricFilter(_Model):
    """Which metrics (and which executions, for :class:`ExecutionMetrics`) to aggregate or list."""

    execution_id: str | None = None
    name: str | None = None
    tool_id: str | None = None
    tenant_id: str | None = None
    since: datetime | None = Field(default=None, description="Executions started at or after this time.")
    until: datetime | None = Field(default=None, description="Executions started before this time.")
    limit: int = Field(default=1000, gt=0, le=100_000)

    @field_validator("execution_id", "name", "tool_id", "tenant_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return constraints.check_filter_text(value)


class ExecutionMetrics(_Model):
    """The spec's ExecutionMetrics: counts from the projection, queue length from Temporal's task queue."""

    total_executions: int
    successful_executions: int
    failed_executions: int
    average_execution_time: timedelta
    current_concurrent_executions: int
    queue_length: int
    error_rate: float

"""Configuration: the spec's ``STEPFLOW_*`` variables, read with pydantic-settings at the edges.

Each group has its own prefix and its own class; :func:`load_settings` reads them all and turns a bad
value into a :class:`~stepflow.errors.ConfigError` that names the variable. Units follow the spec:
``DEFAULT_TIMEOUT`` and ``IDLE_TIMEOUT`` in seconds, ``RETRY_DELAY`` in milliseconds.

Where the spec imagines its own scheduler and worker pool, the values drive Temporal's machinery instead:

========================================  =========================================================
variable                                  what it sets
========================================  =========================================================
STEPFLOW_EXECUTOR_MAX_CONCURRENT_EXECUTIONS  worker slots for tool activities (and workflow tasks)
STEPFLOW_EXECUTOR_DEFAULT_TIMEOUT         per-attempt timeout when a request gives none (s)
STEPFLOW_EXECUTOR_MAX_RETRY_COUNT         cap on a request's ``retry_count`` (above it: refused)
STEPFLOW_EXECUTOR_MAX_PARAMETERS_BYTES    cap on a request's parameters, as JSON (above it: refused)
STEPFLOW_EXECUTOR_RETRY_DELAY             retry delay when a request gives none (ms)
STEPFLOW_SCHEDULER_QUEUE_SIZE             admission limit: new executions are refused (ResourceLimitExceeded)
                                          while the task queue's backlog is at least this long (0 = no limit)
STEPFLOW_SCHEDULER_WORKER_COUNT           pollers per task queue kind
STEPFLOW_SCHEDULER_ENABLE_PRIORITY_QUEUE  send ``priority_key`` with each execution
STEPFLOW_SCHEDULER_ENABLE_FAIR_SCHEDULING send the tenant as ``fairness_key``
STEPFLOW_WORKER_POOL_MIN_WORKERS          minimum pollers when poller autoscaling is on
STEPFLOW_WORKER_POOL_MAX_WORKERS          maximum pollers when poller autoscaling is on
STEPFLOW_WORKER_POOL_IDLE_TIMEOUT         a worker started with ``--exit-when-idle`` stops after this (s)
========================================  =========================================================
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stepflow.errors import ConfigError


class ExecutorSettings(BaseSettings):
    """``STEPFLOW_EXECUTOR_*``: execution defaults and caps."""

    model_config = SettingsConfigDict(env_prefix="STEPFLOW_EXECUTOR_", extra="ignore")

    max_concurrent_executions: int = Field(default=100, gt=0, description="Concurrent tool activities per worker.")
    default_timeout: float = Field(default=300, gt=0, description="Per-attempt timeout in seconds.")
    max_retry_count: int = Field(default=3, ge=0, description="Cap on retries per execution.")
    retry_delay: int = Field(default=1000, ge=0, description="Default retry delay in milliseconds.")
    heartbeat_timeout: float = Field(default=5, gt=0, description="Heartbeat timeout of tool activities (s).")
    cancel_grace: float = Field(default=5, ge=0, description="SIGTERM to SIGKILL grace period (s).")
    max_infrastructure_retries: int = Field(
        default=3, ge=0, le=100, description="Runs again after a lost worker, not counted as tool retries."
    )
    enable_monitoring: bool = Field(default=True, description="Write execution metrics.")
    enable_logging: bool = Field(default=True, description="Write execution logs.")
    max_memory_mb: int = Field(default=4096, gt=0, description="Maximum memory limit a request may ask for.")
    max_cpu_seconds: int = Field(default=3600, gt=0, description="Maximum CPU limit a request may ask for.")
    max_processes: int = Field(default=256, gt=0, description="Maximum process limit a request may ask for.")
    max_output_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="Maximum output size.")
    max_parameters_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest parameters a request may carry, as JSON in bytes."
    )

    @property
    def default_timeout_delta(self) -> timedelta:
        return timedelta(seconds=self.default_timeout)

    @property
    def retry_delay_delta(self) -> timedelta:
        return timedelta(milliseconds=self.retry_delay)

    @property
    def heartbeat_timeout_delta(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_timeout)

    @property
    def cancel_grace_delta(self) -> timedelta:
        return timedelta(seconds=self.cancel_grace)


class SchedulerSettings(BaseSettings):
    """``STEPFLOW_SCHEDULER_*``: how executions are queued on Temporal's task queue."""

    model_config = SettingsConfigDict(env_prefix="STEPFLOW_SCHEDULER_", extra="ignore")

    queue_size: int = Field(default=1000, ge=0, description="Backlog length at which new executions wait.")
    worker_count: int = Field(default=10, gt=0, description="Pollers per task queue kind.")
    priority_levels: int = Field(default=5, ge=1, le=5, description="Temporal priority levels in use.")
    enable_priority_queue: bool = Field(default=True, description="Send priority keys.")
    enable_fair_scheduling: bool = Field(default=True, description="Send the tenant as fairness key.")


class WorkerPoolSettings(BaseSettings):
    """``STEPFLOW_WORKER_POOL_*``: poller autoscaling bounds and idle exit."""

    model_config = SettingsConfigDict(env_prefix="STEPFLOW_WORKER_POOL_", extra="ignore")

    min_workers: int = Field(default=5, gt=0, description="Minimum pollers.")
    max_workers: int = Field(default=50, gt=0, description="Maximum pollers.")
    idle_timeout: float = Field(default=300, gt=0, description="Idle seconds before --exit-when-idle stops.")
    enable_auto_scaling: bool = Field(default=False, description="Autoscale pollers between min and max.")


class TemporalSettings(BaseSettings):
    """``STEPFLOW_TEMPORAL_*``: where the Temporal server is and how to reach it.

    Connection values (address, namespace, API key, TLS) may also come from Temporal's own environment
    configuration, the ``TEMPORAL_*`` variables and the profile file (:mod:`stepflow.temporal_config`); a
    ``STEPFLOW_TEMPORAL_*`` value that is set takes precedence over them, the defaults below apply only when
    neither says anything.
    """

    model_config = SettingsConfigDict(env_prefix="STEPFLOW_TEMPORAL_", extra="ignore")

    address: str = Field(default="127.0.0.1:7233", description="Temporal frontend host:port.")
    namespace: str = Field(default="default", min_length=1)
    task_queue: str = Field(default="stepflow", min_length=1)
    ui_port: int = Field(default=8233, gt=0, lt=65536, description="Web UI port of `stepflow server`.")
    ui_host: str = Field(
        default="127.0.0.1", min_length=1, description="Web UI address of `stepflow server`: it sees every tenant."
    )
    env_config: bool = Field(default=True, description="Read TEMPORAL_* variables and the profile file too.")
    profile: str | None = Field(default=None, min_length=1, description="Profile of the file (else TEMPORAL_PROFILE).")
    config_file: Path | None = Field(default=None, description="Profile file (else TEMPORAL_CONFIG_FILE, its default).")
    api_key: SecretStr | None = Field(default=None, description="API key (Temporal Cloud); turns TLS on.")
    tls: bool | None = Field(default=None, description="TLS on or off (on by default with an API key or TLS files).")
    tls_server_ca_cert_path: Path | None = Field(default=None, description="CA that signed the server's certificate.")
    tls_client_cert_path: Path | None = Field(default=None, description="Client certificate (mTLS).")
    tls_client_key_path: Path | None = Field(default=None, description="Client private key (mTLS).")
    tls_server_name: str | None = Field(default=None, min_length=1, description="Name the server certificate is for.")


class MetricsSettings(BaseSettings):
    """``STEPFLOW_METRICS_*``: the Prometheus endpoint of a worker or API process (:mod:`stepflow.observability`)."""

    model_config = SettingsConfigDict(env_prefix="STEPFLOW_METRICS_", extra="ignore")

    address: str | None = Field(
        default=None, pattern=r"^[^:\s]*:\d{1,5}$", description="host:port to serve /metrics on; off unless set."
    )
    tenants: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Tenants that get their own label value, comma-separated; every other tenant is 'other'.",
    )

    @field_validator("tenants", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class TracingSettings(BaseSettings):
    """The standard ``OTEL_*`` variables that decide whether and where traces go (:mod:`stepflow.observability`).

    Off unless ``OTEL_TRACES_EXPORTER`` names an exporter; the exporter itself reads the rest
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``..._HEADERS``, ``OTEL_SERVICE_NAME``, ...).
    """

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore")

    traces_exporter: Literal["otlp", "console", "none"] | None = Field(
        default=None, description="otlp or console turns tracing on; none or unset leaves it off."
    )
    exporter_otlp_protocol: Literal["http/protobuf", "grpc"] | None = Field(
        default=None, description="OTLP transport (default http/protobuf)."
    )
    exporter_otlp_traces_protocol: Literal["http/protobuf", "grpc"] | None = Field(
        default=None, description="OTLP transport for traces, over OTEL_EXPORTER_OTLP_PROTOCOL."
    )
    sdk_disabled: bool = Field(default=False, description="true turns every OpenTelemetry signal off.")


class Settings(BaseSettings):
    """``STEPFLOW_*``: everything, grouped."""

    model_config = SettingsConfigDict(env_prefix="STEPFLOW_", extra="ignore")

    data_dir: Path = Field(default=Path(".stepflow"), description="Where the databases live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy async URL; SQLite in data_dir if unset.")
    tool_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra Python modules holding tools, comma-separated."
    )
    tool_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Declarative tool files (TOML), comma-separated."
    )
    log_format: str = Field(default="auto", pattern="^(auto|console|json)$")
    permission_checker: str | None = Field(
        default=None, description="module:attribute of an ExecutionPermissionChecker factory; tool grants if unset."
    )
    reconcile_interval: float = Field(
        default=30, ge=0, description="Seconds between the worker's reconciliations of closed executions (0: off)."
    )

    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    worker_pool: WorkerPoolSettings = Field(default_factory=WorkerPoolSettings)
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @field_validator("tool_modules", "tool_files", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'stepflow.db').resolve()}"


_PREFIXES: dict[str, str] = {
    "executor": "STEPFLOW_EXECUTOR_",
    "scheduler": "STEPFLOW_SCHEDULER_",
    "worker_pool": "STEPFLOW_WORKER_POOL_",
    "temporal": "STEPFLOW_TEMPORAL_",
    "metrics": "STEPFLOW_METRICS_",
}


def _load(cls: type[BaseSettings], prefix: str, **overrides: Any) -> Any:
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"])
            problems.append(f"{prefix}{field.upper()}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def load_tracing_settings() -> TracingSettings:
    """The ``OTEL_*`` variables tracing reads; ConfigError naming a bad one."""
    settings: TracingSettings = _load(TracingSettings, "OTEL_")
    return settings


def load_settings(**overrides: Any) -> Settings:
    """Read every ``STEPFLOW_*`` variable; raise ConfigError naming the variable on a bad value.

    ``overrides`` are field values of :class:`Settings` (``data_dir=...``, ``temporal=TemporalSettings(...)``).
    """
    groups = {
        name: overrides.pop(name) if name in overrides else _load(cls, _PREFIXES[name])
        for name, cls in (
            ("executor", ExecutorSettings),
            ("scheduler", SchedulerSettings),
            ("worker_pool", WorkerPoolSettings),
            ("temporal", TemporalSettings),
            ("metrics", MetricsSettings),
        )
    }
    settings: Settings = _load(Settings, "STEPFLOW_", **groups, **overrides)
    if settings.worker_pool.min_workers > settings.worker_pool.max_workers:
        raise ConfigError(
            "invalid configuration: STEPFLOW_WORKER_POOL_MIN_WORKERS "
            f"({settings.worker_pool.min_workers}) is above STEPFLOW_WORKER_POOL_MAX_WORKERS "
            f"({settings.worker_pool.max_workers})"
        )
    return settings

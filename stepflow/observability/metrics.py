"""The product's Prometheus metrics (prometheus-client) and the small API the engine records them with.

Every metric lives in :data:`REGISTRY`, which :mod:`stepflow.observability.prometheus` serves together with the
Temporal SDK's own worker metrics. The engine calls one function at each natural point:

=====================================  ====================================================================
call                                   where
=====================================  ====================================================================
:func:`execution_started`              a worker begins an execution (its first attempt, or its preparation)
:func:`attempt_started`                every attempt of a tool (a retry counts when ``attempt > 1``)
:func:`execution_ended`                a worker recorded an execution's terminal state
:func:`admission_refused`              the Executor refused a start (the task queue's backlog is full)
:func:`sandbox_finished`               a sandboxed command ended: its start latency, the limit it breached
:func:`projection_batch_committed`     a group-commit transaction committed (its number of writes)
:func:`projection_write_failed`        a projection write failed for good, or was dropped
:func:`terminal_state_pending`         a terminal state was handed to the projection and waits to commit
:func:`terminal_state_written`         ... and committed
:func:`projection_rows_mended`         the reconciler restored rows that disagreed with Temporal
=====================================  ====================================================================

Label values are bounded, so the number of series cannot explode: ``tool`` takes the registered tool ids,
``tenant`` the tenants listed in ``STEPFLOW_METRICS_TENANTS`` (every other tenant is ``other``), ``status``
the four terminal statuses, ``error`` the spec's error kinds (``none``, or ``other`` for a type of the tool's
own), ``limit`` the sandbox's limits.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stepflow.errors import ERROR_KINDS, ResourceLimitExceeded

REGISTRY = CollectorRegistry(auto_describe=True)
"""The product's metrics (not prometheus-client's global registry: a library must not fill the host's)."""

OTHER = "other"
LIMITS = ("memory_mb", "cpu_seconds", "max_processes", "max_output_bytes")
WRITE_FAILURE_REASONS = ("error", "dropped")
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500)

EXECUTIONS_STARTED = Counter(
    "stepflow_executions_started",
    "Executions a worker began (first attempt or preparation), by tool and tenant.",
    ["tool", "tenant"],
    registry=REGISTRY,
)
EXECUTIONS_ENDED = Counter(
    "stepflow_executions_ended",
    "Executions whose terminal state a worker recorded, by tool, tenant, status and error kind.",
    ["tool", "tenant", "status", "error"],
    registry=REGISTRY,
)
EXECUTION_DURATION = Histogram(
    "stepflow_execution_duration_seconds",
    "From the execution's start to its terminal state, by tool and status.",
    ["tool", "status"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "stepflow_execution_retries",
    "Attempts of a tool after its first (Temporal's retries).",
    ["tool"],
    registry=REGISTRY,
)
ADMISSION_REFUSALS = Counter(
    "stepflow_admission_refusals",
    "Starts refused because the task queue's backlog reached STEPFLOW_SCHEDULER_QUEUE_SIZE.",
    ["task_queue"],
    registry=REGISTRY,
)
SANDBOX_START = Histogram(
    "stepflow_sandbox_start_seconds",
    "From spawning a command tool's launcher to its sandbox being ready (namespaces, mounts, init).",
    buckets=_START_BUCKETS,
    registry=REGISTRY,
)
LIMIT_BREACHES = Counter(
    "stepflow_sandbox_limit_breaches",
    "Command tools stopped by a resource limit, by limit.",
    ["limit"],
    registry=REGISTRY,
)
PROJECTION_WRITES = Counter(
    "stepflow_projection_writes", "Projection writes committed (each in a group-commit transaction).", registry=REGISTRY
)
PROJECTION_BATCH = Histogram(
    "stepflow_projection_batch_size",
    "Writes per group-commit transaction.",
    buckets=_BATCH_BUCKETS,
    registry=REGISTRY,
)
PROJECTION_WRITE_FAILURES = Counter(
    "stepflow_projection_write_failures",
    "Projection writes that failed (error: the database refused or was unreachable; dropped: too many waiting).",
    ["reason"],
    registry=REGISTRY,
)
ROWS_MENDED = Counter(
    "stepflow_projection_rows_mended",
    "Executions rows the reconciler restored from Temporal's history (missing, or ending otherwise).",
    registry=REGISTRY,
)
UNWRITTEN_TERMINAL = Gauge(
    "stepflow_projection_unwritten_terminal_states",
    "Terminal states handed to the projection that have not committed yet.",
    registry=REGISTRY,
)
OLDEST_UNWRITTEN_TERMINAL = Gauge(
    "stepflow_projection_oldest_unwritten_terminal_seconds",
    "Age of the oldest terminal state waiting to commit (0 when none waits): the projection's lag.",
    registry=REGISTRY,
)

UNKNOWN_TOOL = "unknown"
_OPEN_KEPT = 100_000


class _Context(Protocol):
    @property
    def tenant_id(self) -> str: ...


class _Request(Protocol):
    @property
    def tool_id(self) -> str: ...
    @property
    def context(self) -> _Context: ...


class Start(Protocol):
    """What an activity input that starts an execution carries: its request and when the execution started."""

    @property
    def request(self) -> _Request: ...
    @property
    def start_time(self) -> datetime: ...


class _Error(Protocol):
    @property
    def type(self) -> str: ...


_tenants: frozenset[str] = frozenset()
_unwritten: dict[str, float] = {}  # execution id -> when its terminal state started waiting (monotonic)
_open: OrderedDict[str, tuple[str, str, datetime]] = OrderedDict()  # execution id -> tool, tenant, start


def _oldest_unwritten() -> float:
    waiting = list(_unwritten.values())  # one copy: the scrape runs in the HTTP server's thread
    return time.monotonic() - min(waiting) if waiting else 0.0


# series of fixed label values exist from the start (at 0), so a rate() over them has a beginning
for _limit in (*LIMITS, OTHER):
    LIMIT_BREACHES.labels(_limit)
for _reason in WRITE_FAILURE_REASONS:
    PROJECTION_WRITE_FAILURES.labels(_reason)
UNWRITTEN_TERMINAL.set_function(lambda: len(_unwritten))
OLDEST_UNWRITTEN_TERMINAL.set_function(_oldest_unwritten)


def label_tenants(tenants: Iterable[str]) -> None:
    """The tenants that get a label value of their own (STEPFLOW_METRICS_TENANTS); the rest are ``other``."""
    global _tenants
    _tenants = frozenset(tenants)


def tenant_label(tenant_id: str) -> str:
    return tenant_id if tenant_id in _tenants else OTHER


def error_label(kind: str | None) -> str:
    if kind is None:
        return "none"
    return kind if kind in ERROR_KINDS else OTHER


def execution_started(execution_id: str, start: Start, *, attempt: int = 1) -> None:
    """A worker began an execution; counted on its first attempt only (a retried preparation is not a start).

    The worker remembers the execution's tool, tenant and start (bounded) for :func:`execution_ended` calls
    that do not carry them.
    """
    tool_id, tenant = start.request.tool_id, tenant_label(start.request.context.tenant_id)
    _open[execution_id] = (tool_id, tenant, start.start_time)
    while len(_open) > _OPEN_KEPT:
        _open.popitem(last=False)
    if attempt == 1:
        EXECUTIONS_STARTED.labels(tool_id, tenant).inc()


def attempt_started(tool_id: str, attempt: int) -> None:
    """An attempt of a tool began; every attempt after the first is a retry."""
    if attempt > 1:
        RETRIES.labels(tool_id).inc()


def execution_ended(
    execution_id: str, status: str, error: _Error | None, end_time: datetime, *, start: Start | None = None
) -> None:
    """A worker recorded an execution's terminal state ``status`` (an ExecutionStatus or its value).

    Tool, tenant and duration come from ``start``, else from what this process remembers of the execution;
    an execution this process never saw start counts under tool ``unknown`` without a duration.
    """
    remembered = _open.pop(execution_id, None)
    if start is not None:
        tool_id, tenant, started = (
            start.request.tool_id,
            tenant_label(start.request.context.tenant_id),
            start.start_time,
        )
    elif remembered is not None:
        tool_id, tenant, started = remembered
    else:
        tool_id, tenant, started = UNKNOWN_TOOL, OTHER, end_time
    value = str(getattr(status, "value", status))
    EXECUTIONS_ENDED.labels(tool_id, tenant, value, error_label(None if error is None else error.type)).inc()
    if tool_id != UNKNOWN_TOOL:
        EXECUTION_DURATION.labels(tool_id, value).observe(max(0.0, (end_time - started).total_seconds()))


def admission_refused(task_queue: str) -> None:
    ADMISSION_REFUSALS.labels(task_queue).inc()


def sandbox_finished(start_seconds: float | None, error: BaseException | None) -> None:
    """A sandboxed command ended: observe how long its sandbox took to start, count the limit it breached."""
    if start_seconds is not None:
        SANDBOX_START.observe(start_seconds)
    if isinstance(error, ResourceLimitExceeded):  # its message starts with the limit's name (sandbox.classify)
        limit = error.message.partition(":")[0]
        LIMIT_BREACHES.labels(limit if limit in LIMITS else OTHER).inc()


def projection_batch_committed(writes: int) -> None:
    PROJECTION_WRITES.inc(writes)
    PROJECTION_BATCH.observe(writes)


def projection_write_failed(reason: str = "error") -> None:
    PROJECTION_WRITE_FAILURES.labels(reason).inc()


def projection_rows_mended(rows: int) -> None:
    ROWS_MENDED.inc(rows)


def terminal_state_pending(execution_id: str) -> None:
    """An execution's terminal state waits to commit (a repeated call keeps the first time)."""
    _unwritten.setdefault(execution_id, time.monotonic())


def terminal_state_written(execution_id: str) -> None:
    _unwritten.pop(execution_id, None)


__all__ = [
    "REGISTRY",
    "Start",
    "admission_refused",
    "attempt_started",
    "execution_ended",
    "execution_started",
    "label_tenants",
    "projection_batch_committed",
    "projection_write_failed",
    "sandbox_finished",
    "terminal_state_pending",
    "terminal_state_written",
]

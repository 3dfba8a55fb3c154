"""How a ToolExecutionWorkflow is started: its id, search attributes, memo, priority and fairness.

Written once for both ways an execution starts: the Executor (``client.start_workflow``) and a composite's
step (``workflow.execute_child_workflow``). Deterministic, so the workflow code may call it.

Priority: with ``STEPFLOW_SCHEDULER_PRIORITY_LEVELS`` = L (the server's priority levels, Temporal's default
5), Temporal's keys run from 1 (first) to L (last) and an execution without a key gets the server's default
``(1 + L) // 2``. The four priorities spread over them so that ``normal`` is that default:

=========  ==========================  ==================  =========  ==========
priority   key                         L = 5 (default)      L = 3      L = 1
=========  ==========================  ==================  =========  ==========
critical   1                           1                    1          1
high       (1 + normal) // 2           2                    1          1
normal     (1 + L) // 2                3                    2          1
low        L                           5                    3          1
=========  ==========================  ==================  =========  ==========

Fairness: the tenant is the fairness key, so one tenant's burst does not starve the others' executions
within a priority level.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.common import Priority as TemporalPriority
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from stepflow import search_attributes as sa
from stepflow.contracts import COMPOSITE, SchedulingOptions, ToolExecutionInput
from stepflow.models import ExecutionStatus, Priority

WORKFLOW_NAME = "ToolExecutionWorkflow"
_EXECUTION_NAMESPACE = uuid.UUID("5b0f3c1e-2d7a-4c1b-9a43-7f1f0d6a1c55")


def execution_id_for(tenant_id: str, request_id: str) -> str:
    """The execution id of a tenant's request: the same request id always names the same execution."""
    return f"exec-{uuid.uuid5(_EXECUTION_NAMESPACE, f'{tenant_id}/{request_id}')}"


def priority_key(priority: Priority, levels: int) -> int:
    """Temporal's priority key of ``priority`` on a server with ``levels`` priority levels (see the table)."""
    normal = (1 + levels) // 2
    return {
        Priority.CRITICAL: 1,
        Priority.HIGH: (1 + normal) // 2,
        Priority.NORMAL: normal,
        Priority.LOW: levels,
    }[priority]


def temporal_priority(priority: Priority, tenant_id: str, scheduling: SchedulingOptions) -> TemporalPriority:
    """The priority and fairness keys an execution of ``tenant_id`` at ``priority`` is started with."""
    return TemporalPriority(
        priority_key=priority_key(priority, scheduling.priority_levels) if scheduling.send_priority else None,
        fairness_key=tenant_id if scheduling.send_fairness else None,
    )


def initial_search_attributes(job: ToolExecutionInput) -> TypedSearchAttributes:
    """Tool, tenant and user for the Web UI's filters; a composite also starts with StepflowStatus=pending.

    An atomic execution's StepflowStatus stays unset until its end: its one activity never upserts
    ``running``, so a ``pending`` set at the start would be wrong for as long as the tool runs (Temporal's
    own ExecutionStatus says Running meanwhile).
    """
    context = job.request.context
    pairs = [
        SearchAttributePair(sa.TOOL_ID, job.request.tool_id),
        SearchAttributePair(sa.TENANT_ID, context.tenant_id),
        SearchAttributePair(sa.USER_ID, context.user_id),
    ]
    if job.kind == COMPOSITE:
        pairs.append(SearchAttributePair(sa.STATUS, ExecutionStatus.PENDING.value))
    return TypedSearchAttributes(pairs)


@dataclass(frozen=True)
class StartOptions:
    """The options ``start_workflow`` and ``execute_child_workflow`` share, as keyword arguments."""

    id: str
    search_attributes: TypedSearchAttributes
    priority: TemporalPriority
    memo: dict[str, Any] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "id": self.id,
            "search_attributes": self.search_attributes,
            "priority": self.priority,
        }
        if self.memo is not None:
            kwargs["memo"] = self.memo
        return kwargs


def start_options(job: ToolExecutionInput, *, memo: dict[str, Any] | None = None) -> StartOptions:
    """Everything but the input and the task queue that an execution's workflow is started with."""
    request = job.request
    return StartOptions(
        id=job.execution_id,
        search_attributes=initial_search_attributes(job),
        priority=temporal_priority(request.options.priority, request.context.tenant_id, job.runtime.scheduling),
        memo=memo,
    )


def step_memo(job: ToolExecutionInput, step_id: str) -> dict[str, Any]:
    """The memo a composite's step starts with: who runs what and which step, for the Web UI and ``describe``.

    Executions the Executor starts carry no memo: the same facts are in their input, which the Web UI shows
    and ``Executor.get_execution_result`` reads, and a memo cost the server about half a millisecond per
    execution (measured in the projection benchmark).
    """
    request, context = job.request, job.request.context
    return {
        "tool_id": request.tool_id,
        "version": request.version,
        "tenant_id": context.tenant_id,
        "user_id": context.user_id,
        "session_id": context.session_id,
        "request_id": context.request_id,
        "parent_execution_id": context.parent_execution_id,
        "step_id": step_id,
    }

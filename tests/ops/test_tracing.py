"""Traces across the whole path, recorded by an in-memory exporter: one trace per execution, parent links intact.

A worker and an Executor of this process on the session's dev server, both on a client from
:func:`stepflow.temporal.connect` after tracing was configured (Temporal's TracingInterceptor on the client and
so on the worker). The in-memory exporter is the test's stand-in for an OTLP collector.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow.config import TemporalSettings
from stepflow.db.projection import Projection
from stepflow.identity import LOCAL_ADMIN
from stepflow.models import ExecutionContext, ExecutionRequest, ExecutionStatus
from stepflow.observability import tracing
from stepflow.sandbox import sandbox_unavailable
from stepflow.temporal import connect
from tests.conftest import make_settings
from tests.ops.conftest import upstream
from worker.build import build_registry, build_worker

TENANT = "tracing-tenant"


@dataclass
class Traced:
    exporter: InMemorySpanExporter
    executor: Executor

    async def run(self, tool_id: str, **parameters: object) -> tuple[str, list[ReadableSpan]]:
        """Run one execution to its end; its id and the spans of its trace."""
        request = ExecutionRequest(tool_id=tool_id, parameters=parameters, context=ExecutionContext(tenant_id=TENANT))
        result = await self.executor.execute_tool(request)
        assert result.status is ExecutionStatus.COMPLETED
        spans = self.exporter.get_finished_spans()
        starts = [s for s in spans if s.name == "stepflow.start"]
        [start] = [s for s in starts if (s.attributes or {}).get("execution_id") == result.execution_id]
        return result.execution_id, [s for s in spans if s.context.trace_id == start.context.trace_id]


@pytest.fixture(scope="module")
async def traced(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Traced]:
    tracing.reset()
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter)
    settings = make_settings(tmp_path_factory.mktemp("tracing"))
    try:
        client = await connect(
            TemporalSettings(address=upstream(dev_env), task_queue=settings.temporal.task_queue, env_config=False)
        )
        registry = build_registry(settings)
        projection = await Projection.open(settings.resolved_database_url)
        await projection.writer.upsert_tools([definition.info() for definition in registry.all()])
        executor = Executor(client, projection, settings, principal=LOCAL_ADMIN)
        try:
            async with build_worker(client, settings, registry, projection):
                yield Traced(exporter, executor)
        finally:
            await executor.close()
    finally:
        tracing.reset()


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans in {sorted(s.name for s in spans)}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_holds_the_start_the_workflow_the_activity_the_tool_and_the_projection_write(
    traced: Traced,
) -> None:
    execution_id, spans = await traced.run("echo", message=f"trace-{uuid.uuid4().hex[:6]}")

    start = one(spans, "stepflow.start")
    start_workflow = one(spans, "StartWorkflow:ToolExecutionWorkflow")
    run_workflow = one(spans, "RunWorkflow:ToolExecutionWorkflow")
    start_activity = one(spans, "StartActivity:run_and_record")
    run_activity = one(spans, "RunActivity:run_and_record")
    tool_run = one(spans, "stepflow.tool.run")
    writes = [span for span in spans if span.name.startswith("stepflow.projection.record_")]

    assert start.parent is None  # the trace begins at the starter
    assert parent_of(one(spans, "stepflow.check_tool")) == start.context.span_id
    assert parent_of(one(spans, "stepflow.admission")) == start.context.span_id
    assert parent_of(start_workflow) == start.context.span_id
    # Temporal's workflow spans are instants, all children of the start (a workflow may run for months)
    assert parent_of(run_workflow) == start_workflow.context.span_id
    assert parent_of(start_activity) == start_workflow.context.span_id
    assert parent_of(run_activity) == start_activity.context.span_id
    assert parent_of(tool_run) == run_activity.context.span_id
    assert writes and all(parent_of(write) == run_activity.context.span_id for write in writes)

    for span in spans:  # every span of the trace says which execution it belongs to
        assert span.attributes is not None
        assert (span.attributes.get("execution_id"), span.attributes.get("tool_id")) == (execution_id, "echo"), (
            span.name,
            dict(span.attributes),
        )
        assert span.attributes.get("tenant_id") == TENANT, span.name


async def test_a_composites_steps_are_children_in_its_trace(traced: Traced) -> None:
    execution_id, spans = await traced.run("fan-out-in", text="hi", seconds=0)

    start_children = [span for span in spans if span.name.startswith("StartChildWorkflow:")]
    child_runs = [span for span in spans if span.name == "RunWorkflow:ToolExecutionWorkflow" and span.parent]
    assert len(start_children) == 4
    by_id = {span.context.span_id: span for span in spans}
    steps = [run for run in child_runs if run.attributes and run.attributes["execution_id"] != execution_id]
    assert len(steps) == 4
    for step in steps:
        assert parent_of(step) in {start.context.span_id for start in start_children}
        assert step.attributes is not None
        assert step.attributes["temporalWorkflowID"] == step.attributes["execution_id"]
        assert step.attributes["tool_id"] in {"echo", "sleep"} and step.attributes["tenant_id"] == TENANT
    tools = sorted(
        str(span.attributes["tool_id"]) for span in spans if span.name == "stepflow.tool.run" and span.attributes
    )
    assert tools == ["echo", "echo", "echo", "sleep"]
    for span in spans:  # every span is linked into the one trace through its parents
        hops = 0
        while span.parent is not None:
            span, hops = by_id[span.parent.span_id], hops + 1
        assert span.name == "stepflow.start" and hops < 20


async def test_a_command_tools_sandbox_start_and_process_are_spans_of_its_tool_run(traced: Traced) -> None:
    if (reason := sandbox_unavailable()) is not None:
        pytest.skip(f"command tools cannot run here: {reason}")
    _, spans = await traced.run("print", message="traced")
    tool_run = one(spans, "stepflow.tool.run")
    started, process = one(spans, "stepflow.sandbox.start"), one(spans, "stepflow.sandbox.process")
    assert parent_of(started) == parent_of(process) == tool_run.context.span_id
    assert started.start_time is not None and started.end_time is not None and process.end_time is not None
    assert started.start_time <= started.end_time <= process.end_time
    assert (started.attributes or {}).get("tool_id") == "print"

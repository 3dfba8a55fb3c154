"""The /metrics endpoint after a known set of executions: each product counter moved by exactly what they did.

A real worker and Executor on the session's dev server, connected through :func:`stepflow.temporal.connect`
after :func:`stepflow.observability.prometheus.serve` (so the SDK's worker metrics are served too). Counters
are process-wide: the test compares a scrape before with one after, on series labelled with a tenant of its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow.config import MetricsSettings, Settings, TemporalSettings
from stepflow.db.projection import Projection
from stepflow.errors import ResourceLimitExceeded
from stepflow.identity import LOCAL_ADMIN
from stepflow.models import (
    ExecutionContext,
    ExecutionOptions,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    ResourceLimits,
)
from stepflow.observability import prometheus
from stepflow.sandbox import sandbox_unavailable
from stepflow.temporal import connect
from tests.conftest import make_settings
from tests.ops.conftest import upstream
from tests.ops.scrape import Scrape, scrape
from worker.build import build_registry, build_worker

TENANT = f"metrics-{uuid.uuid4().hex[:8]}"
OTHER_TENANT = "unlisted-tenant"


def request(tool_id: str, tenant: str = TENANT, **options: Any) -> ExecutionRequest:
    parameters = options.pop("parameters", {})
    return ExecutionRequest(
        tool_id=tool_id,
        parameters=parameters,
        context=ExecutionContext(tenant_id=tenant),
        options=ExecutionOptions(**options),
    )


async def ended(executor: Executor, execution_id: str) -> ExecutionResult:
    """The result once terminal (polled: live state comes from Temporal's describe, there is no event to await)."""
    while not (result := await executor.get_execution_result(execution_id)).status.is_terminal:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return result


async def cancelled_sleep(executor: Executor) -> ExecutionResult:
    execution_id = await executor.execute_tool_async(request("sleep", parameters={"seconds": 30}))
    while await executor.get_execution_status(execution_id) is not ExecutionStatus.RUNNING:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await executor.cancel_execution(execution_id)
    return await ended(executor, execution_id)


async def run_known_executions(executor: Executor) -> list[ExecutionResult]:
    """2 echo completed, flaky retried then completed, fail failed, sleep timed out, sleep cancelled, print
    completed, print breaching max_output_bytes, and one echo of a tenant not listed in STEPFLOW_METRICS_TENANTS."""
    quick = [
        request("echo", parameters={"n": 1}),
        request("echo", parameters={"n": 2}),
        request("flaky", parameters={"failures": 1}, retry_count=1, retry_delay=timedelta(milliseconds=10)),
        request("fail", parameters={"message": "boom"}),
        request("sleep", parameters={"seconds": 10}, timeout=timedelta(seconds=1)),
        request("print", parameters={"message": "hi"}),
        request("print", parameters={"message": "too long"}, resource_limits=ResourceLimits(max_output_bytes=2)),
        request("echo", tenant=OTHER_TENANT),
    ]

    async def outcome(one: ExecutionRequest) -> ExecutionResult:
        return await ended(executor, await executor.execute_tool_async(one))

    return [*await asyncio.gather(*(outcome(one) for one in quick)), await cancelled_sleep(executor)]


async def refused_start(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A start refused by admission control. The backlog reading is made full here: a real one takes Temporal's
    statistics seconds to show (tests/integration/test_admission.py waits for one)."""

    async def full(*_: object) -> int:
        return 10**6

    monkeypatch.setattr("starter.admission.queue_length", full)
    monkeypatch.setattr(executor._shared.admission, "_read_at", float("-inf"))
    with pytest.raises(ResourceLimitExceeded):
        await executor.execute_tool_async(request("echo", parameters={"refused": True}))


async def worker_and_executor(settings: Settings, address: str) -> tuple[Any, Executor]:
    client = await connect(TemporalSettings(address=address, task_queue=settings.temporal.task_queue, env_config=False))
    prometheus.watch_backlog(client, settings.temporal.task_queue)
    registry = build_registry(settings)
    projection = await Projection.open(settings.resolved_database_url)
    await projection.writer.upsert_tools([definition.info() for definition in registry.all()])
    return build_worker(client, settings, registry, projection), Executor(
        client, projection, settings, principal=LOCAL_ADMIN
    )


@dataclass(frozen=True)
class Observed:
    """What the endpoint served before and after the known executions, and how they ended."""

    before: Scrape
    after: Scrape
    results: list[ExecutionResult]
    task_queue: str

    def moved(self, name: str, **labels: str) -> float:
        return self.after.value(name, **labels) - self.before.value(name, **labels)


@pytest.fixture(scope="module")
async def observed(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Observed]:
    """Serve /metrics, run the known executions on a worker of this process, scrape before and after."""
    if (reason := sandbox_unavailable()) is not None:
        pytest.skip(f"command tools cannot run here: {reason}")
    endpoint = prometheus.serve(MetricsSettings(address="127.0.0.1:0", tenants=[TENANT]))
    assert endpoint is not None
    settings = make_settings(tmp_path_factory.mktemp("metrics"))
    try:
        worker, executor = await worker_and_executor(settings, upstream(dev_env))
        before = await scrape(endpoint.url)
        try:
            async with worker:
                results = await run_known_executions(executor)
                with pytest.MonkeyPatch.context() as monkeypatch:
                    await refused_start(executor, monkeypatch)
        finally:
            await executor.close()
        yield Observed(before, await scrape(endpoint.url), results, settings.temporal.task_queue)
    finally:
        endpoint.close()


def test_the_known_executions_ended_as_planned(observed: Observed) -> None:
    statuses = [
        (r.metadata.tool_id if r.metadata else None, r.status, r.error and r.error.type) for r in observed.results
    ]
    assert statuses == [
        ("echo", ExecutionStatus.COMPLETED, None),
        ("echo", ExecutionStatus.COMPLETED, None),
        ("flaky", ExecutionStatus.COMPLETED, None),
        ("fail", ExecutionStatus.FAILED, "ExecutionFailed"),
        ("sleep", ExecutionStatus.TIMED_OUT, "TimeoutExceeded"),
        ("print", ExecutionStatus.COMPLETED, None),
        ("print", ExecutionStatus.FAILED, "ResourceLimitExceeded"),
        ("echo", ExecutionStatus.COMPLETED, None),
        ("sleep", ExecutionStatus.CANCELLED, "ExecutionCancelled"),
    ]


def test_executions_started_and_ended_by_tool_tenant_status_and_error(observed: Observed) -> None:
    started = "stepflow_executions_started_total"
    for tool, count in {"echo": 2, "flaky": 1, "fail": 1, "sleep": 2, "print": 2}.items():
        assert observed.moved(started, tool=tool, tenant=TENANT) == count, tool
    assert observed.moved(started, tool="echo", tenant="other") == 1  # an unlisted tenant is not a label value

    ended = "stepflow_executions_ended_total"
    expected_ends = {
        ("echo", "completed", "none"): 2,
        ("flaky", "completed", "none"): 1,
        ("fail", "failed", "ExecutionFailed"): 1,
        ("sleep", "timed_out", "TimeoutExceeded"): 1,
        ("sleep", "cancelled", "ExecutionCancelled"): 1,
        ("print", "completed", "none"): 1,
        ("print", "failed", "ResourceLimitExceeded"): 1,
    }
    for (tool, status, error), count in expected_ends.items():
        assert observed.moved(ended, tool=tool, tenant=TENANT, status=status, error=error) == count, tool
    assert observed.after.total(ended, tenant=TENANT) - observed.before.total(ended, tenant=TENANT) == 8

    duration = "stepflow_execution_duration_seconds_count"
    assert observed.moved(duration, tool="echo", status="completed") == 3
    assert observed.moved(duration, tool="sleep", status="timed_out") == 1
    assert observed.moved("stepflow_execution_duration_seconds_sum", tool="sleep", status="timed_out") >= 1.0


def test_retries_refusals_and_sandbox_counters(observed: Observed) -> None:
    assert observed.moved("stepflow_execution_retries_total", tool="flaky") == 1
    for tool in ("echo", "fail", "sleep", "print"):
        assert observed.moved("stepflow_execution_retries_total", tool=tool) == 0
    assert observed.moved("stepflow_admission_refusals_total", task_queue=observed.task_queue) == 1
    assert observed.moved("stepflow_sandbox_start_seconds_count") == 2
    assert observed.moved("stepflow_sandbox_limit_breaches_total", limit="max_output_bytes") == 1
    assert observed.moved("stepflow_sandbox_limit_breaches_total", limit="memory_mb") == 0


def test_projection_writes_batches_and_lag(observed: Observed) -> None:
    writes = observed.moved("stepflow_projection_writes_total")
    assert writes >= 9  # at least each execution's terminal state; lines and rows share its transactions
    assert observed.moved("stepflow_projection_batch_size_sum") == writes
    assert observed.moved("stepflow_projection_write_failures_total", reason="error") == 0
    assert observed.after.value("stepflow_projection_unwritten_terminal_states") == 0
    assert observed.after.value("stepflow_projection_oldest_unwritten_terminal_seconds") == 0


def test_the_backlog_and_temporals_own_worker_metrics_are_on_the_same_page(observed: Observed) -> None:
    assert ("stepflow_task_queue_backlog", frozenset({("task_queue", observed.task_queue)})) in observed.after.values
    sdk = {name for name in observed.after.sample_names() if name.startswith("temporal_")}
    assert "temporal_activity_execution_latency_count" in sdk
    completed = "temporal_workflow_completed_total"
    assert observed.after.total(completed, task_queue=observed.task_queue) == 5  # Temporal agrees: 3 echo, flaky, print
    assert any(name.startswith("temporal_worker_task_slots") for name in sdk), sorted(sdk)


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "stepflow-dashboard.json"
_METRIC = re.compile(r"\b((?:stepflow|temporal)_[a-z0-9_]+)(\{[^}]*\})?")
_BY = re.compile(r"\bby \(([^)]*)\)")
_SCRAPE_LABELS = {"instance", "job"}  # added by Prometheus when it scrapes


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_dashboard_query_reads_metrics_and_labels_the_endpoint_serves(observed: Observed) -> None:
    served = observed.after
    labels_of: dict[str, set[str]] = {}
    pairs_of: dict[str, set[tuple[str, str]]] = {}
    for name, labels in served.values:
        labels_of.setdefault(name, set()).update(key for key, _ in labels)
        pairs_of.setdefault(name, set()).update(labels)
    queries = dashboard_queries()
    assert len(queries) >= 10
    for expr in queries:
        used = _METRIC.findall(expr)
        assert used, f"no stepflow_/temporal_ metric in {expr!r}"
        names = [name for name, _ in used]
        for name, matchers in used:
            assert name in labels_of, f"{name} (in {expr!r}) is not served; served: {sorted(labels_of)}"
            for matcher in filter(None, matchers.strip("{}").split(",")):
                label = re.split(r"[!=~]", matcher.strip(), maxsplit=1)[0]
                assert label in labels_of[name], f"{name} has no label {label!r} (in {expr!r})"
                if re.fullmatch(r'\w+="[^"]*"', matcher.strip()):  # an equality: that value must occur
                    value = matcher.strip().split('"')[1]
                    assert (label, value) in pairs_of[name], f"{name} never has {label}={value!r} (in {expr!r})"
        for grouping in _BY.findall(expr):
            for label in (part.strip() for part in grouping.split(",")):
                known = set().union(*(labels_of[name] for name in names)) | _SCRAPE_LABELS
                assert label in known, f"by ({label}) in {expr!r}: no such label on {names}"

"""The /metrics endpoint and the recording API on their own: served only when asked, labels bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stepflow.config import MetricsSettings
from stepflow.contracts import PrepareInput
from stepflow.errors import ResourceLimitExceeded
from stepflow.models import ExecutionContext, ExecutionRequest, ExecutionStatus
from stepflow.observability import metrics, prometheus
from tests.ops.scrape import scrape


async def test_metrics_are_off_unless_an_address_is_set() -> None:
    assert prometheus.serve(MetricsSettings()) is None
    assert prometheus.serve(MetricsSettings(address=None, tenants=["a"])) is None


async def test_recorded_values_are_served_with_bounded_labels() -> None:
    endpoint = prometheus.serve(MetricsSettings(address="127.0.0.1:0", tenants=["listed"]))
    assert endpoint is not None
    try:
        before = await scrape(endpoint.url)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for tenant in ("listed", "unlisted-1", "unlisted-2"):
            job = PrepareInput(
                execution_id=f"e-{tenant}",
                request=ExecutionRequest(tool_id="probe", context=ExecutionContext(tenant_id=tenant)),
                start_time=start,
            )
            metrics.execution_started(job.execution_id, job, attempt=1)
            metrics.execution_started(job.execution_id, job, attempt=2)  # a retried preparation: not a start
            metrics.execution_ended(job.execution_id, ExecutionStatus.FAILED, None, start + timedelta(seconds=2))
        metrics.sandbox_finished(0.02, ResourceLimitExceeded("cpu_seconds: tool reached its CPU time limit"))
        metrics.sandbox_finished(None, ResourceLimitExceeded("a message of another shape"))
        metrics.terminal_state_pending("waiting")
        after = await scrape(endpoint.url)
    finally:
        metrics.terminal_state_written("waiting")
        endpoint.close()

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("stepflow_executions_started_total", tool="probe", tenant="listed") == 1
    assert moved("stepflow_executions_started_total", tool="probe", tenant="other") == 2
    ended = {"tool": "probe", "status": "failed", "error": "none"}
    assert moved("stepflow_executions_ended_total", tenant="other", **ended) == 2
    assert moved("stepflow_execution_duration_seconds_sum", tool="probe", status="failed") == 6.0
    assert moved("stepflow_sandbox_limit_breaches_total", limit="cpu_seconds") == 1
    assert moved("stepflow_sandbox_limit_breaches_total", limit="other") == 1
    assert moved("stepflow_sandbox_start_seconds_count") == 1
    assert after.value("stepflow_projection_unwritten_terminal_states") >= 1
    assert after.value("stepflow_projection_oldest_unwritten_terminal_seconds") > 0
    assert {tenant for (_, labels) in after.values for key, tenant in labels if key == "tenant"} <= {
        "listed",
        "other",
    } | {tenant for (_, labels) in before.values for key, tenant in labels if key == "tenant"}


def test_a_tool_error_type_of_its_own_is_not_a_label_value() -> None:
    assert metrics.error_label("TimeoutExceeded") == "TimeoutExceeded"
    assert metrics.error_label("MyToolsOwnError-1234") == "other"
    assert metrics.error_label(None) == "none"

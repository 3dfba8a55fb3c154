"""``stepflow demo`` end to end (a subprocess on free ports), and how a case is judged."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from starter.demo import DEMO_CASES, CaseOutcome, DemoCase, run_cases
from starter.executor import Executor
from starter.server import free_port
from stepflow.models import ExecutionStatus
from tests.cli.conftest import run_cli

pytestmark = pytest.mark.timeout(180)


async def test_demo_runs_every_case_and_exits_0() -> None:
    port, ui_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("STEPFLOW_")}
    env.update({"STEPFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "STEPFLOW_TEMPORAL_UI_PORT": str(ui_port)})
    result = await run_cli("demo", env=env, within=150)
    assert result.code == 0, result
    assert f"all {len(DEMO_CASES)} cases ended as expected" in result.stdout
    assert f"Temporal Web UI: http://127.0.0.1:{ui_port}" in result.stdout
    for case in DEMO_CASES:
        assert case.name in result.stdout
    for status in ("completed", "failed", "timed_out", "cancelled"):
        assert status in result.stdout
    assert "UNEXPECTED" not in result.stdout


def test_a_case_is_ok_only_when_temporal_and_the_row_agree_with_the_expectation() -> None:
    case = DemoCase("fails", "fail", ExecutionStatus.FAILED, "always fails", expect_error="ExecutionFailed")
    ok = CaseOutcome(case, "exec-1", ExecutionStatus.FAILED, ExecutionStatus.FAILED, "ExecutionFailed")
    assert ok.ok
    assert not CaseOutcome(case, "exec-1", ExecutionStatus.COMPLETED, ExecutionStatus.COMPLETED, None).ok
    assert not CaseOutcome(case, "exec-1", ExecutionStatus.FAILED, None, "ExecutionFailed").ok
    assert not CaseOutcome(case, "exec-1", ExecutionStatus.FAILED, ExecutionStatus.FAILED, "InvalidParameters").ok


def test_a_refused_case_is_ok_only_when_nothing_started_and_the_kind_matches() -> None:
    case = DemoCase("rejected", "sleep", ExecutionStatus.FAILED, "bad", expect_error="InvalidParameters", refused=True)
    assert CaseOutcome(case, None, None, None, "InvalidParameters").ok
    assert not CaseOutcome(case, None, None, None, "ToolNotFound").ok
    assert not CaseOutcome(case, "exec-1", ExecutionStatus.FAILED, ExecutionStatus.FAILED, "InvalidParameters").ok


def test_cases_build_valid_requests() -> None:
    for case in DEMO_CASES:
        request = case.request()
        assert request.tool_id == case.tool_id
        assert request.context.tenant_id == "demo"
        if case.timeout is not None:
            assert request.options.timeout == timedelta(seconds=case.timeout)


@pytest.mark.dev_server
async def test_cases_that_raise_or_end_unexpectedly_are_reported(dev_executor: Executor) -> None:
    cases = [
        DemoCase("fine", "echo", ExecutionStatus.COMPLETED, "echo", {"message": "x"}),
        DemoCase("wrong", "fail", ExecutionStatus.COMPLETED, "expected to complete, fails"),
        DemoCase("missing", "no-such-tool", ExecutionStatus.COMPLETED, "unknown tool"),
    ]
    outcomes, problems = await run_cases(dev_executor, cases)
    assert problems == ["missing"]
    assert [(outcome.case.name, outcome.ok) for outcome in outcomes] == [("fine", True), ("wrong", False)]
    assert outcomes[1].status is ExecutionStatus.FAILED and outcomes[1].row_status is ExecutionStatus.FAILED

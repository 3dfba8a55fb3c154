"""Who may do what: an Executor bound to a principal, the grants checker, tenant isolation in SQL.

On the dev server with a real worker; the principals are views of one Executor (``for_principal``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from starter.executor import Executor
from stepflow.config import Settings
from stepflow.errors import ConfigError, PermissionDenied
from stepflow.identity import Principal, Role, load_permission_checker
from stepflow.models import (
    ExecutionContext,
    ExecutionFilter,
    ExecutionRequest,
    ExecutionStatus,
    MetricFilter,
    ToolGrant,
)
from tests.composite.conftest import TOOLS
from tests.conftest import executor_for, running_worker
from tests.integration import custom_checker
from tests.workflows.timeskip import wait_until

ANN = Principal(tenant_id="acme", user_id="ann", role=Role.MEMBER)
VIC = Principal(tenant_id="acme", user_id="vic", role=Role.VIEWER)
GUS = Principal(tenant_id="globex", user_id="gus", role=Role.MEMBER)


@pytest.fixture
async def admin(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Executor]:
    settings = settings.model_copy(update={"tool_files": [TOOLS]})
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        yield executor


async def grant(admin: Executor, principal: Principal, tool_id: str) -> None:
    await admin.projection.writer.add_grant(
        ToolGrant(tenant_id=principal.tenant_id, tool_id=tool_id, subject=f"user:{principal.user_id}")
    )


async def test_a_member_runs_only_granted_tools_as_itself(admin: Executor) -> None:
    ann = admin.for_principal(ANN)
    with pytest.raises(PermissionDenied, match=r"may not run tool 'echo'.*stepflow grants add --tenant acme"):
        await ann.execute_tool(ExecutionRequest(tool_id="echo"))
    await grant(admin, ANN, "echo")
    result = await ann.execute_tool(ExecutionRequest(tool_id="echo", parameters={"m": 1}))
    assert (result.metadata.tenant_id, result.metadata.user_id) == ("acme", "ann"), "tenant and user are the caller's"
    for context in (ExecutionContext(tenant_id="globex"), ExecutionContext(user_id="someone-else")):
        with pytest.raises(PermissionDenied, match="a request runs for its caller"):
            await ann.execute_tool_async(ExecutionRequest(tool_id="echo", context=context))
    await admin.projection.writer.add_grant(ToolGrant(tenant_id="acme", tool_id="*", subject="role:member"))
    flaky = ExecutionRequest(tool_id="flaky", parameters={"failures": 0})
    assert (await ann.execute_tool(flaky)).status is ExecutionStatus.COMPLETED, "granted to the role, every tool"


async def test_a_viewer_reads_its_tenant_and_changes_nothing(admin: Executor) -> None:
    await grant(admin, ANN, "sleep")
    sleeping = await admin.for_principal(ANN).execute_tool_async(
        ExecutionRequest(tool_id="sleep", parameters={"seconds": 30})
    )
    vic = admin.for_principal(VIC)
    with pytest.raises(PermissionDenied, match="may not run tool 'sleep'; a viewer may not start executions"):
        await vic.execute_tool_async(ExecutionRequest(tool_id="sleep"))
    assert await vic.get_execution_status(sleeping) in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
    with pytest.raises(PermissionDenied, match="a viewer may not cancel"):
        await vic.cancel_execution(sleeping)
    await admin.for_principal(ANN).cancel_execution(sleeping)
    await wait_until(lambda: _ended(vic, sleeping), what="the cancel")


async def test_another_tenant_sees_nothing_of_acme(admin: Executor) -> None:
    await grant(admin, ANN, "echo")
    await grant(admin, GUS, "echo")
    mine = (await admin.for_principal(ANN).execute_tool(ExecutionRequest(tool_id="echo"))).execution_id
    theirs = (await admin.for_principal(GUS).execute_tool(ExecutionRequest(tool_id="echo"))).execution_id
    gus = admin.for_principal(GUS)
    for call in (gus.get_execution_status, gus.get_execution_result, gus.cancel_execution, gus.get_logs):
        with pytest.raises(PermissionDenied, match="another tenant"):
            await call(mine)
    assert [info.execution_id for info in await gus.list_executions()] == [theirs]
    with pytest.raises(PermissionDenied, match="may not list executions of tenant 'acme'"):
        await gus.list_executions(ExecutionFilter(tenant_id="acme"))
    assert (await gus.get_metrics()).total_executions == 1
    assert {metric.execution_id for metric in await gus.get_metric_rows(MetricFilter())} == {theirs}
    assert await gus.get_logs(theirs)
    everything = {info.execution_id for info in await admin.list_executions()}
    assert everything == {mine, theirs}, "an admin sees every tenant"


async def test_a_composite_may_not_run_a_tool_its_caller_may_not_run(admin: Executor) -> None:
    await grant(admin, ANN, "test-diamond")  # its steps run echo and sleep, which ann may not run
    request = ExecutionRequest(tool_id="test-diamond", parameters={"text": "t", "seconds": 0})
    with pytest.raises(PermissionDenied, match="may not run tool 'echo', which step 'a' of composite 'test-diamond'"):
        await admin.for_principal(ANN).execute_tool(request)
    [refused] = await admin.list_executions()
    assert refused.status is ExecutionStatus.FAILED and refused.tenant_id == "acme"
    assert await admin.list_steps(refused.execution_id) == [], "no step ran"


async def _ended(executor: Executor, execution_id: str) -> bool:
    return (await executor.get_execution_status(execution_id)).is_terminal


async def test_a_checker_of_ones_own_is_asked_instead(dev_env: WorkflowEnvironment, settings: Settings) -> None:
    settings = settings.model_copy(update={"permission_checker": "tests.integration.custom_checker:checker"})
    async with running_worker(dev_env, settings), executor_for(dev_env, settings) as executor:
        ann = executor.for_principal(ANN)
        assert (await ann.execute_tool(ExecutionRequest(tool_id="echo"))).status is ExecutionStatus.COMPLETED
        with pytest.raises(PermissionDenied, match="may not run tool 'sleep'"):
            await ann.execute_tool(ExecutionRequest(tool_id="sleep"))
    assert custom_checker.CALLS[-2:] == ["echo", "sleep"]


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("no colon", "is not module:attribute"),
        ("tests.nowhere:checker", "cannot be loaded"),
        ("tests.integration.custom_checker:CALLS", "gave a checker without can_execute_tool"),
    ],
)
def test_a_bad_checker_reference_is_a_config_error(reference: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_permission_checker(reference, None)  # type: ignore[arg-type]

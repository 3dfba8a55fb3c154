"""Smoke check of the time-skipping environment with the real workflow (search attributes included)."""

from stepflow.models import ExecutionRequest, ExecutionStatus
from tests.conftest import executor_for, running_worker


async def test_echo_on_time_skipping(time_skipping_env, settings):
    async with running_worker(time_skipping_env, settings), executor_for(time_skipping_env, settings) as ex:
        result = await ex.execute_tool(ExecutionRequest(tool_id="echo", parameters={"m": 1}))
        assert result.status is ExecutionStatus.COMPLETED
        assert result.output == {"m": 1}

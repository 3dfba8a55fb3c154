"""The bare baseline of the projection benchmark: one workflow, one trivial activity, nothing else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow


@activity.defn(name="bare_echo")
async def bare_echo(parameters: dict[str, Any]) -> dict[str, Any]:
    """Return the parameters (what the product's ``echo`` tool does, minus everything around it)."""
    return parameters


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    """Runs ``bare_echo`` once."""

    @workflow.run
    async def run(self, parameters: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await workflow.execute_activity(
            bare_echo, parameters, start_to_close_timeout=timedelta(seconds=60)
        )
        return result

"""Bare prototypes of a composite step's possible shapes, for benchmark 8 (``--only shapes``).

Each step is a child workflow, as in the product; what varies is what the child does:

- ``activity``: one activity (the suite's bare child);
- ``three-step``: the product's step today without its database: a local activity, the activity, a local
  activity, search attributes and a memo at start, StepflowStatus upserted to running and to completed;
- ``one-activity``: the product's one-activity path (what an atomic execution takes): search attributes at start,
  the activity, StepflowStatus upserted once at the end;
- ``local``: the same with the tool run as a local activity inside the child.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from benchmarks.bare import TIMEOUT, bare_echo

STATUS = SearchAttributeKey.for_keyword("StepflowStatus")
SHAPES = ("activity", "three-step", "one-activity", "local")


def start_attributes() -> TypedSearchAttributes:
    """Three keyword attributes at start, as the product's executions carry (tool, tenant, user)."""
    keys = ("StepflowToolId", "StepflowTenantId", "StepflowUserId")
    return TypedSearchAttributes(
        [
            SearchAttributePair(SearchAttributeKey.for_keyword(k), v)
            for k, v in zip(keys, ("echo", "t", "u"), strict=True)
        ]
    )


@workflow.defn(name="BareShapedStep")
class BareShapedStep:
    """One step in the given shape; returns the echoed input."""

    @workflow.run
    async def run(self, shape: str, parameters: dict[str, Any]) -> dict[str, Any]:
        output: dict[str, Any]
        if shape == "three-step":
            workflow.upsert_search_attributes([STATUS.value_set("running")])
            await workflow.execute_local_activity(bare_echo, parameters, start_to_close_timeout=TIMEOUT)
            output = await workflow.execute_activity(bare_echo, parameters, start_to_close_timeout=TIMEOUT)
            await workflow.execute_local_activity(bare_echo, output, start_to_close_timeout=TIMEOUT)
        elif shape == "local":
            output = await workflow.execute_local_activity(bare_echo, parameters, start_to_close_timeout=TIMEOUT)
        else:
            output = await workflow.execute_activity(bare_echo, parameters, start_to_close_timeout=TIMEOUT)
        if shape != "activity":
            workflow.upsert_search_attributes([STATUS.value_set("completed")])
        return output


@workflow.defn(name="BareShapedChain")
class BareShapedChain:
    """``steps`` children of one shape, one after the other, each given the previous output."""

    @workflow.run
    async def run(self, shape: str, steps: int) -> dict[str, Any]:
        output: dict[str, Any] = {"text": "hi"}
        parent = workflow.info().workflow_id
        for step in range(steps):
            extra: dict[str, Any] = {}
            if shape != "activity":
                extra = {"search_attributes": start_attributes(), "memo": {"tool_id": "echo", "step_id": f"s{step}"}}
            output = await workflow.execute_child_workflow(
                BareShapedStep.run, args=[shape, output], id=f"{parent}.s{step}", **extra
            )
        return output


WORKFLOWS: list[type] = [BareShapedStep, BareShapedChain]

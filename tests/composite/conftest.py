"""Fixtures for composite tools: settings that load tests/composite/tools.toml, and row helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from stepflow.config import Settings
from stepflow.db.projection import Projection
from stepflow.models import ExecutionFilter, ExecutionInfo, ExecutionStatus
from tests.conftest import make_settings

TOOLS = Path(__file__).parent / "tools.toml"


@pytest.fixture
def composite_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path).model_copy(update={"tool_files": [TOOLS]})


async def row_of(projection: Projection, execution_id: str) -> Any:
    """The execution's row (it must exist)."""
    row = await projection.reader.get_execution(execution_id)
    assert row is not None, f"no executions row for {execution_id}"
    return row


async def children_of(projection: Projection, parent_id: str) -> dict[str, ExecutionInfo]:
    """The parent's child rows, keyed by step id (the part of the child id after the parent id)."""
    rows = await projection.reader.list_executions(ExecutionFilter(parent_execution_id=parent_id))
    return {row.execution_id.removeprefix(parent_id + "."): row for row in rows}


async def wait_until_running(projection: Projection, parent_id: str, steps: Iterable[str]) -> None:
    """Poll the projection until every named step of the parent has a ``running`` row (at most ~30 s)."""
    wanted = set(steps)
    rows: dict[str, ExecutionInfo] = {}
    for _ in range(600):
        rows = await children_of(projection, parent_id)
        if all(step in rows and rows[step].status is ExecutionStatus.RUNNING for step in wanted):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"steps {sorted(wanted)} of {parent_id} never all ran: {rows}")

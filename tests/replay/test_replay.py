"""Committed histories of every tool-execution path replay with the current ToolExecutionWorkflow.

A failure here means a workflow change would break executions already running: put the change behind
``workflow.patched()`` instead of re-recording (see ``record_histories.py``). One deliberately altered
history must fail, so the check is known to be able to fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from activities.names import RUN_TOOL
from stepflow.converter import DATA_CONVERTER
from tests.replay.record_histories import ALTERED, PATHS, RENAMED_ACTIVITY, altered_history, history_path
from workflows import ToolExecutionWorkflow

# The event that closes each path's history.
CLOSING_EVENT = {
    "completed": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    "retried_completed": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    "failed": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    "cancelled": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
}


def load(name: str) -> WorkflowHistory:
    path = history_path(name)
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def replayer() -> Replayer:
    return Replayer(workflows=[ToolExecutionWorkflow], data_converter=DATA_CONVERTER)


@pytest.mark.parametrize("path", PATHS)
async def test_recorded_path_replays_without_nondeterminism(path: str) -> None:
    history = load(f"tool_{path}")
    assert history.events[-1].event_type == CLOSING_EVENT[path], "the recording covers the whole path"
    scheduled = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert [e.activity_task_scheduled_event_attributes.activity_type.name for e in scheduled] == [RUN_TOOL]
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"tool_{path}.json no longer replays: {result.replay_failure}"


async def test_retried_history_records_the_third_attempt() -> None:
    history = load("tool_retried_completed")
    (started,) = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert started.activity_task_started_event_attributes.attempt == 3


async def test_altered_history_fails_to_replay_with_nondeterminism() -> None:
    history = load(ALTERED)
    names = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert names == [RENAMED_ACTIVITY]
    with pytest.raises(NondeterminismError):
        await replayer().replay_workflow(history)


def test_committed_altered_history_is_the_completed_one_with_the_activity_renamed() -> None:
    completed = json.loads(Path(history_path("tool_completed")).read_text(encoding="utf-8"))
    committed = json.loads(Path(history_path(ALTERED)).read_text(encoding="utf-8"))
    assert committed == altered_history(completed)

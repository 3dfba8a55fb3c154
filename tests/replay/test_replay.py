"""Committed histories of every tool-execution path replay with the current ToolExecutionWorkflow.

A failure here means a workflow change would break executions already running: put the change behind
``workflow.patched()`` instead of re-recording (see ``record_histories.py``). One deliberately altered
history must fail, so the check is known to be able to fail.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from activities.names import RUN_AND_RECORD
from stepflow.config import Settings
from stepflow.contracts import ToolExecutionInput
from stepflow.converter import DATA_CONVERTER
from stepflow.models import ExecutionRequest
from tests.conftest import running_worker
from tests.replay.record_histories import (
    ALTERED,
    HISTORIES,
    PATHS,
    PREFIX,
    RENAMED_ACTIVITY,
    altered_history,
    history_path,
)
from tests.workflows.timeskip import events, of_type, runtime_for
from workflows import ToolExecutionWorkflow

MARKER = EventType.EVENT_TYPE_MARKER_RECORDED
LOCAL_ACTIVITY, PATCH = "core_local_activity", "core_patch"
# Each path's closing event, the activities it scheduled and the markers it recorded: a completion is recorded
# by the activity itself, every other end by the finish_execution local activity; a lost worker's run is run
# again behind the infrastructure-retries patch.
EXPECTED = {
    "completed": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, 1, []),
    "retried_completed": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, 1, []),
    "failed": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, 1, [LOCAL_ACTIVITY]),
    "cancelled": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, 1, [LOCAL_ACTIVITY]),
    "timed_out": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, 1, [LOCAL_ACTIVITY]),
    "invalid": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, 1, [LOCAL_ACTIVITY]),
    "worker_lost": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, 2, [PATCH]),
    "projection_down": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, 1, [LOCAL_ACTIVITY, LOCAL_ACTIVITY]),
}
# Histories recorded before a change to the workflow's commands, which the code must still replay (patched()).
BEFORE = {
    "worker_lost.before_infrastructure_retries": (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, 1, [LOCAL_ACTIVITY]),
}


def load(name: str) -> WorkflowHistory:
    path = history_path(name)
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def replayer() -> Replayer:
    return Replayer(workflows=[ToolExecutionWorkflow], data_converter=DATA_CONVERTER)


@pytest.mark.parametrize("path", [*PATHS, *BEFORE])
async def test_recorded_path_replays_without_nondeterminism(path: str) -> None:
    history = load(f"{PREFIX}_{path}")
    closing, activities, markers = {**EXPECTED, **BEFORE}[path]
    assert history.events[-1].event_type == closing, "the recording covers the whole path"
    scheduled = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert [e.activity_task_scheduled_event_attributes.activity_type.name for e in scheduled] == [
        RUN_AND_RECORD
    ] * activities
    recorded = [e.marker_recorded_event_attributes.marker_name for e in of_type(list(history.events), MARKER)]
    assert recorded == markers
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{PREFIX}_{path}.json no longer replays: {result.replay_failure}"


def test_every_path_has_its_expectations() -> None:
    assert set(EXPECTED) == set(PATHS)


async def test_retried_history_records_the_third_attempt() -> None:
    history = load(f"{PREFIX}_retried_completed")
    (started,) = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert started.activity_task_started_event_attributes.attempt == 3


def test_every_committed_history_is_replayed_by_a_test() -> None:
    """A history file nobody replays proves nothing: each one belongs to a path of this test or the composites'."""
    replayed = {f"{PREFIX}_{path}" for path in [*PATHS, *BEFORE]} | {ALTERED}
    committed = {path.stem for path in HISTORIES.glob("*.json") if not path.stem.startswith("composite_")}
    assert committed == replayed


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
    completed = json.loads(Path(history_path(f"{PREFIX}_completed")).read_text(encoding="utf-8"))
    committed = json.loads(Path(history_path(ALTERED)).read_text(encoding="utf-8"))
    assert committed == altered_history(completed)


@pytest.mark.dev_server
async def test_an_input_with_an_unknown_field_fails_the_workflow_task_not_the_workflow(
    dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    """A worker older than its starter fails the workflow task instead of running an input it does not know.

    A worker whose contracts lack a field (here: one no model has) must not run an execution whose input has
    it, or it would record a path that a newer worker replays differently. The contracts forbid unknown
    fields, so the workflow task fails and waits for a worker that knows the field; the workflow goes on.
    (On the dev server: a workflow task failing again and again would stall the time-skipping server's clock.)
    """
    job = ToolExecutionInput(
        execution_id=f"exec-{uuid.uuid4()}",
        request=ExecutionRequest(tool_id="echo"),
        runtime=runtime_for(settings),
        kind="python",
    ).model_dump(mode="json") | {"field_from_a_newer_starter": 1}
    async with running_worker(dev_env, settings):
        handle = await dev_env.client.start_workflow(
            "ToolExecutionWorkflow", job, id=job["execution_id"], task_queue=settings.temporal.task_queue
        )
        for _ in range(100):
            if of_type(await events(handle), EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED):
                break
            await asyncio.sleep(0.05)
        history = await events(handle)
        assert of_type(history, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
        assert not of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        assert not of_type(history, EventType.EVENT_TYPE_MARKER_RECORDED)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate("probe done")

"""Recorded composite histories (completed, fail_fast, continue, cancelled, timed_out) replay with the current code."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from stepflow.converter import DATA_CONVERTER
from tests.composite.record_histories import HISTORIES, RECORDINGS
from workflows import ToolExecutionWorkflow

COMPOSITE_HISTORIES = sorted(HISTORIES.glob("composite_*.json"))


def _history(path: Path, *, tamper: tuple[str, str] | None = None) -> WorkflowHistory:
    text = path.read_text(encoding="utf-8")
    return WorkflowHistory.from_json(path.stem, text.replace(*tamper) if tamper else text)


def test_every_composite_path_has_a_history():
    assert {path.stem for path in COMPOSITE_HISTORIES} >= {f"composite_{name}" for name in RECORDINGS}


@pytest.mark.parametrize("path", COMPOSITE_HISTORIES, ids=lambda path: path.stem)
async def test_composite_history_replays(path: Path):
    history = _history(path)
    replayer = Replayer(workflows=[ToolExecutionWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


async def test_a_history_the_code_would_not_produce_fails_to_replay():
    """The check can fail: the same history with step 'b' started under another child id is nondeterministic."""
    original = _history(HISTORIES / "composite_completed.json")
    history = _history(HISTORIES / "composite_completed.json", tamper=('.b"', '.renamed"'))
    assert history.events != original.events
    replayer = Replayer(workflows=[ToolExecutionWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure

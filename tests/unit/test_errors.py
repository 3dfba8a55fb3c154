"""The error kinds: each survives the round trip through Temporal's failures, with the right retryability."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState, TimeoutError, TimeoutType

from stepflow.errors import (
    ERROR_KINDS,
    NON_RETRYABLE_KINDS,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutorError,
    InternalError,
    TimeoutExceeded,
    from_failure,
    to_application_error,
)

SPEC_KINDS = {
    "ToolNotFound",
    "ExecutionFailed",
    "TimeoutExceeded",
    "ResourceLimitExceeded",
    "PermissionDenied",
    "InvalidParameters",
    "DatabaseError",
    "InternalError",
}


def _through_temporal(application: BaseException) -> WorkflowFailureError:
    """The chain a caller sees: WorkflowFailureError <- ActivityError <- the activity's failure."""
    activity_error = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="run_tool",
        activity_id="2",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    activity_error.__cause__ = application
    return WorkflowFailureError(cause=activity_error)


def test_every_kind_of_the_spec_exists() -> None:
    assert set(ERROR_KINDS) >= SPEC_KINDS
    for kind, cls in ERROR_KINDS.items():
        assert issubclass(cls, ExecutorError)
        assert cls.kind == kind


@pytest.mark.parametrize("kind", sorted(ERROR_KINDS))
def test_round_trip_through_application_error(kind: str) -> None:
    cls = ERROR_KINDS[kind]
    original = cls(f"{kind} happened: details")
    application = to_application_error(original)
    assert application.type == kind
    assert application.message == f"{kind} happened: details"
    assert application.non_retryable is (not cls.retryable)

    for failure in (application, _through_temporal(application)):
        back = from_failure(failure)
        assert type(back) is cls
        assert back.message == original.message
        assert str(back) == original.message


def test_invalid_input_kinds_are_non_retryable_tool_failures_are_retried() -> None:
    for kind in ("ToolNotFound", "InvalidParameters", "PermissionDenied", "ResourceLimitExceeded"):
        assert kind in NON_RETRYABLE_KINDS
    for kind in ("ExecutionFailed", "DatabaseError"):
        assert kind not in NON_RETRYABLE_KINDS
        assert ERROR_KINDS[kind].retryable


def test_an_executor_error_is_returned_as_is() -> None:
    error = ExecutionFailed("already typed")
    assert from_failure(error) is error


def test_timeout_becomes_timeout_exceeded() -> None:
    timeout = TimeoutError("activity timeout", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[])
    assert isinstance(from_failure(_through_temporal(timeout)), TimeoutExceeded)


def test_cancellation_becomes_execution_cancelled() -> None:
    assert isinstance(from_failure(WorkflowFailureError(cause=CancelledError("cancelled"))), ExecutionCancelled)


def test_a_foreign_application_error_is_an_execution_failure_naming_its_type() -> None:
    error = from_failure(_through_temporal(ApplicationError("division by zero", type="ZeroDivisionError")))
    assert isinstance(error, ExecutionFailed)
    assert error.message == "ZeroDivisionError: division by zero"


def test_anything_else_is_an_internal_error() -> None:
    error = from_failure(RuntimeError("socket closed"))
    assert isinstance(error, InternalError)
    assert error.message == "socket closed"

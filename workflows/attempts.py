"""The attempts of an atomic tool's activity: Temporal retries the tool's failures, a lost worker is not one.

``retry_count`` is the tool's budget: Temporal's RetryPolicy retries a failed (or timed-out) attempt until
1 + retry_count attempts have run. A worker lost while the tool ran (its heartbeat timed out, or it shut
down) is not the tool's failure: the heartbeat timeout is non-retryable in the policy, so the activity ends
at once, and the workflow runs it again (another worker takes it) without counting the lost attempt, up to
``STEPFLOW_EXECUTOR_MAX_INFRASTRUCTURE_RETRIES`` times; a tool declared ``idempotent = false`` is never run
again, its execution fails with the worker-lost error. The heartbeat details say which attempt of its run
a lost worker was running (``(progress, attempt)``); a run that never heartbeated was on its first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from stepflow.contracts import WORKER_SHUTDOWN, RunAndRecordInput, ToolExecutionInput
    from stepflow.errors import NON_RETRYABLE_KINDS, InternalError

INFRASTRUCTURE_RETRIES = "infrastructure-retries"
"""The ``workflow.patched()`` id of running the activity again after a lost worker (histories before it fail)."""
HEARTBEAT_TIMEOUT = "TemporalTimeout:Heartbeat"
"""A heartbeat timeout in ``non_retryable_error_types``: Temporal ends the activity instead of retrying it."""


class Attempts:
    """The tool activity's runs: retries and timeouts from the request's options capped by the engine's settings."""

    def __init__(self, job: ToolExecutionInput) -> None:
        options, runtime = job.request.options, job.runtime
        self.max_attempts = 1 + min(options.retry_count, runtime.max_retry_count)
        self.retry_delay = options.retry_delay if options.retry_delay is not None else runtime.default_retry_delay
        self.retry_delay_ms = int(self.retry_delay.total_seconds() * 1000)
        self._timeout = options.timeout or runtime.default_timeout
        self._heartbeat_timeout = runtime.heartbeat_timeout
        self._reruns_allowed = runtime.max_infrastructure_retries if job.idempotent else 0
        self.used = 0  # tool attempts earlier runs used up
        self.reruns = 0  # runs after a lost worker

    def activity_input(self, job: ToolExecutionInput, start_time: datetime) -> RunAndRecordInput:
        return RunAndRecordInput(
            execution_id=job.execution_id,
            request=job.request,
            start_time=start_time,
            retry_delay_ms=self.retry_delay_ms,
            max_attempts=self.max_attempts,
            attempts_before=self.used,
            rerun=self.reruns,
        )

    def activity_options(self) -> dict[str, Any]:
        return {
            "start_to_close_timeout": self._timeout,
            "heartbeat_timeout": self._heartbeat_timeout,
            "retry_policy": RetryPolicy(
                initial_interval=max(self.retry_delay, timedelta(milliseconds=1)),
                backoff_coefficient=2.0,
                maximum_attempts=self.max_attempts - self.used,
                non_retryable_error_types=[*NON_RETRYABLE_KINDS, HEARTBEAT_TIMEOUT, WORKER_SHUTDOWN],
            ),
            "cancellation_type": workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        }

    def run_again_after(self, lost_attempt: int) -> bool:
        """Count a run whose worker was lost on its ``lost_attempt``; True if the activity may run again."""
        if self.reruns >= self._reruns_allowed:
            return False
        self.used += lost_attempt - 1  # the attempts before it in that run were the tool's own failures
        self.reruns += 1
        return True

    def worker_lost(self, job: ToolExecutionInput) -> InternalError:
        """The error of an execution whose worker was lost once more than it may be."""
        tool = job.request.tool_id
        if not job.idempotent:
            return InternalError(
                f"the worker running tool {tool!r} was lost while the tool ran, and the tool is declared "
                "idempotent = false, so it was not run again; start it again if that is safe"
            )
        lost = "once" if self.reruns == 0 else f"{self.reruns + 1} times"
        return InternalError(
            f"the worker running tool {tool!r} was lost while the tool ran, {lost} "
            f"(STEPFLOW_EXECUTOR_MAX_INFRASTRUCTURE_RETRIES={self._reruns_allowed}); check the workers' health"
        )


def lost_attempt(failure: BaseException) -> int | None:
    """The attempt (of its run) whose worker was lost, when that is how the activity ended; else None."""
    if not isinstance(failure, ActivityError):
        return None
    cause = failure.cause
    if isinstance(cause, TimeoutError) and cause.type == TimeoutType.HEARTBEAT:
        details = cause.last_heartbeat_details
        return int(details[1]) if len(details) > 1 and isinstance(details[1], int) else 1
    if isinstance(cause, ApplicationError) and cause.type == WORKER_SHUTDOWN:
        return int(cause.details[0]) if cause.details and isinstance(cause.details[0], int) else 1
    return None

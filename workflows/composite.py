"""The deterministic step-graph runner of composite tools, used by ToolExecutionWorkflow.

Each step runs as a child ToolExecutionWorkflow (a full execution: its own row, retries, timeout, logs)
with the id ``{parent id}.{step id}``, the parent's tenant, user and session, ``parent_execution_id`` set,
and ``ParentClosePolicy.REQUEST_CANCEL`` so a parent that ends never leaves a child running.

Steps start, in declaration order, as soon as every step they depend on completed; independent steps
run at the same time. A step whose dependency did not complete is ``skipped``. Under ``fail_fast`` the
first failed step cancels the running siblings (the parent waits until they ended) and skips the rest;
under ``continue`` every step that can run runs. Cancelling the parent cancels every running child and
waits for them. A composite request's ``options.timeout`` is the budget of the whole composite: a child's
timeout is its step's ``timeout`` capped by what is left of the budget (the whole remainder when the step
sets none), and when the budget runs out the running children are cancelled and the composite ends
``timed_out``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import CancelledError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from stepflow.constraints import MAX_TIMEOUT, describe_validation_error
    from stepflow.contracts import CompositePlan, CompositeStep, FailurePolicy, ToolExecutionInput
    from stepflow.errors import (
        ExecutionCancelled,
        ExecutionFailed,
        ExecutorError,
        InvalidParameters,
        TimeoutExceeded,
        from_failure,
    )
    from stepflow.models import (
        ErrorInfo,
        ExecutionRequest,
        ExecutionResult,
        ExecutionStatus,
        JsonDict,
    )
    from stepflow.tools.references import BadReference, resolve
    from stepflow.workflow_start import WORKFLOW_NAME, start_options, step_memo

SKIPPED = "skipped"
STEP_DEADLINE_MARGIN = timedelta(seconds=1)
"""How long after the composite's deadline a step's own timeout falls (plus the cancel grace)."""


@dataclass
class StepOutcome:
    """How one step ended: a terminal ExecutionStatus value or ``skipped``, with its output or error."""

    status: str
    execution_id: str | None = None
    output: Any = None
    error: ErrorInfo | None = None

    def report(self) -> JsonDict:
        entry: JsonDict = {"status": self.status, "execution_id": self.execution_id}
        if self.status == ExecutionStatus.COMPLETED:
            entry["output"] = self.output
        if self.error is not None:
            entry["error"] = self.error.model_dump()
        return entry


@dataclass
class CompositeOutcome:
    """How the composite ended: its status, output (or per-step report) and error."""

    status: ExecutionStatus
    output: Any = None
    error: ExecutorError | None = None
    steps: dict[str, StepOutcome] = field(default_factory=dict)


class CompositeRunner:
    """Runs one composite's plan inside the parent's workflow; :meth:`run` returns its outcome."""

    def __init__(self, job: ToolExecutionInput, plan: CompositePlan, inputs: JsonDict) -> None:
        self._job = job
        self._plan = plan
        self._inputs = inputs
        self._outcomes: dict[str, StepOutcome] = {}
        self._running: dict[str, asyncio.Task[StepOutcome]] = {}
        timeout = job.request.options.timeout
        self._deadline: datetime | None = None if timeout is None else workflow.info().start_time + timeout

    def report(self) -> JsonDict:
        """Every step's outcome so far, in declaration order (pending steps omitted)."""
        return {s.id: self._outcomes[s.id].report() for s in self._plan.steps if s.id in self._outcomes}

    async def run(self) -> CompositeOutcome:
        """Run the steps; on cancellation of the parent, cancel the children, wait for them, re-raise."""
        try:
            timed_out = await self._loop()
        except (asyncio.CancelledError, CancelledError):
            await self._cancel_running()
            self._skip_rest("the composite was cancelled")
            raise
        if timed_out:
            await self._cancel_running()
            self._skip_rest("the composite ran out of time")
            return self._ended(
                ExecutionStatus.TIMED_OUT,
                TimeoutExceeded(
                    f"composite {self._job.request.tool_id!r} exceeded its timeout of "
                    f"{self._job.request.options.timeout}; {self._summary()}"
                ),
            )
        if any(self._outcomes[s.id].status != ExecutionStatus.COMPLETED for s in self._plan.steps):
            return self._ended(ExecutionStatus.FAILED, None)
        outputs = {step_id: outcome.output for step_id, outcome in self._outcomes.items()}
        if self._plan.output is None:
            output = {s.id: outputs[s.id] for s in self._plan.steps}
            return CompositeOutcome(ExecutionStatus.COMPLETED, output, steps=self._outcomes)
        try:
            output = resolve(self._plan.output, self._inputs, outputs)
        except BadReference as exc:
            return self._ended(ExecutionStatus.FAILED, ExecutionFailed(f"composite output: {exc}"))
        return CompositeOutcome(ExecutionStatus.COMPLETED, output, steps=self._outcomes)

    async def _loop(self) -> bool:
        """Start ready steps and collect finished ones until none is left; True if the deadline passed."""
        while True:
            if self._plan.failure_policy is FailurePolicy.FAIL_FAST and self._any_failed():
                await self._cancel_running()
                self._skip_rest("not run: an earlier step failed (failure_policy fail_fast)")
                return False
            if len(self._outcomes) == len(self._plan.steps):
                return False
            remaining = self._remaining()
            if remaining is not None and remaining <= timedelta(0):
                return True
            self._start_ready()
            if not self._running:
                return False
            tasks = list(self._running.values())
            seconds = None if remaining is None else remaining.total_seconds()
            await workflow.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            self._collect()

    def _start_ready(self) -> None:
        for step in self._plan.steps:
            if step.id in self._outcomes or step.id in self._running:
                continue
            blocked = [d for d in step.depends_on if d in self._outcomes and not self._completed(d)]
            if blocked:
                self._outcomes[step.id] = StepOutcome(
                    SKIPPED,
                    error=ErrorInfo(
                        type="ExecutionCancelled", message=f"not run: step {blocked[0]!r} did not complete"
                    ),
                )
                continue
            if all(self._completed(d) for d in step.depends_on):
                self._running[step.id] = asyncio.create_task(self._run_step(step))
        # a skip can unblock nothing but can skip dependants: repeat until stable
        if any(
            s.id not in self._outcomes
            and s.id not in self._running
            and any(d in self._outcomes and not self._completed(d) for d in s.depends_on)
            for s in self._plan.steps
        ):
            self._start_ready()

    def _collect(self) -> None:
        for step in self._plan.steps:
            task = self._running.get(step.id)
            if task is not None and task.done():
                self._outcomes[step.id] = task.result()
                del self._running[step.id]

    async def _cancel_running(self) -> None:
        """Cancel every running child and wait until each has ended (its tool stopped, its row written)."""
        for step in self._plan.steps:
            task = self._running.get(step.id)
            if task is not None:
                task.cancel()
        if self._running:
            await workflow.wait(list(self._running.values()))
        self._collect()

    def _skip_rest(self, why: str) -> None:
        for step in self._plan.steps:
            if step.id not in self._outcomes:
                self._outcomes[step.id] = StepOutcome(SKIPPED, error=ErrorInfo(type="ExecutionCancelled", message=why))

    def _completed(self, step_id: str) -> bool:
        outcome = self._outcomes.get(step_id)
        return outcome is not None and outcome.status == ExecutionStatus.COMPLETED

    def _any_failed(self) -> bool:
        return any(o.status not in (ExecutionStatus.COMPLETED, SKIPPED) for o in self._outcomes.values())

    def _remaining(self) -> timedelta | None:
        return None if self._deadline is None else self._deadline - workflow.now()

    def _summary(self) -> str:
        parts = []
        for step in self._plan.steps:
            outcome = self._outcomes.get(step.id)
            if outcome is None:
                continue
            text = f"{step.id} {outcome.status}"
            if outcome.error is not None and outcome.status not in (SKIPPED, ExecutionStatus.CANCELLED):
                text += f" ({outcome.error.type}: {outcome.error.message})"
            parts.append(text)
        return "steps: " + "; ".join(parts)

    def _ended(self, status: ExecutionStatus, error: ExecutorError | None) -> CompositeOutcome:
        """A composite that did not complete: its error (by default naming the steps that did not) and report."""
        if error is None:
            culprits = [
                f"step {s.id!r} {self._outcomes[s.id].status}"
                for s in self._plan.steps
                if self._outcomes[s.id].status != ExecutionStatus.COMPLETED and self._outcomes[s.id].status != SKIPPED
            ]
            error = ExecutionFailed(
                f"composite {self._job.request.tool_id!r} failed: {', '.join(culprits)}; {self._summary()}"
            )
        return CompositeOutcome(status, {"steps": self.report()}, error, self._outcomes)

    async def _run_step(self, step: CompositeStep) -> StepOutcome:
        child_id = f"{self._job.execution_id}.{step.id}"
        outputs = {step_id: o.output for step_id, o in self._outcomes.items() if o.status == ExecutionStatus.COMPLETED}
        try:
            parameters = resolve(step.parameters, self._inputs, outputs)
        except BadReference as exc:
            invalid = InvalidParameters(f"step {step.id!r}: {exc}")
            return StepOutcome(ExecutionStatus.FAILED, error=ErrorInfo(type=invalid.kind, message=invalid.message))
        try:
            request = self._child_request(step, child_id, parameters)
        except ValidationError as exc:  # e.g. parameters rendered from a step's output that is not plain JSON
            invalid = InvalidParameters(f"step {step.id!r}: {describe_validation_error(exc)}")
            return StepOutcome(ExecutionStatus.FAILED, error=ErrorInfo(type=invalid.kind, message=invalid.message))
        if step.kind is None:
            message = f"step {step.id!r}: the plan does not say which kind of tool {step.tool_id!r} is"
            return StepOutcome(ExecutionStatus.FAILED, error=ErrorInfo(type="InternalError", message=message))
        child = ToolExecutionInput(
            execution_id=child_id,
            request=request,
            runtime=self._job.runtime,
            kind=step.kind,
            idempotent=step.idempotent,
            principal=self._job.principal,
        )
        try:
            result: ExecutionResult = await workflow.execute_child_workflow(
                WORKFLOW_NAME,
                child,
                result_type=ExecutionResult,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                cancellation_type=workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
                **start_options(child, memo=step_memo(child, step.id)).as_kwargs(),
            )
        except WorkflowAlreadyStartedError:
            message = f"step {step.id!r}: a child execution {child_id!r} exists already and is not this composite's"
            return StepOutcome(ExecutionStatus.FAILED, child_id, error=ErrorInfo(type="InternalError", message=message))
        except (ChildWorkflowError, asyncio.CancelledError, CancelledError) as failure:
            error = from_failure(failure)
            if isinstance(error, ExecutionCancelled):
                status = ExecutionStatus.CANCELLED
            elif isinstance(error, TimeoutExceeded):
                status = ExecutionStatus.TIMED_OUT
            else:
                status = ExecutionStatus.FAILED
            return StepOutcome(status, child_id, error=ErrorInfo(type=error.kind, message=error.message))
        return StepOutcome(ExecutionStatus.COMPLETED, child_id, output=result.output)

    def _child_request(self, step: CompositeStep, child_id: str, parameters: JsonDict) -> ExecutionRequest:
        """The step's request, built through the models' constraints (ValidationError when it breaks them)."""
        parent = self._job.request
        # the step's own timeout (a leaf falls back to the engine default, a nested composite has no budget);
        # one that would reach past this composite's deadline is replaced by that deadline plus a margin:
        # at the deadline the composite cancels its running steps, and the step's own timeout must not race it
        timeout = step.timeout
        remaining = self._remaining()
        if remaining is not None and (timeout is None or timeout >= remaining):
            timeout = max(remaining, timedelta(0)) + self._job.runtime.cancel_grace + STEP_DEADLINE_MARGIN
        context = {
            **parent.context.model_dump(),
            "parent_execution_id": self._job.execution_id,
            "request_id": child_id,
        }
        options = {
            **parent.options.model_dump(),
            "timeout": None if timeout is None else min(timeout, MAX_TIMEOUT),
            "retry_count": parent.options.retry_count if step.retry_count is None else step.retry_count,
            "priority": step.priority or parent.options.priority,
        }
        return ExecutionRequest.model_validate(
            {
                "tool_id": step.tool_id,
                "version": step.version,
                "parameters": parameters,
                "context": context,
                "options": options,
            }
        )

"""The spec's error kinds as Python exceptions, and their round trip through Temporal.

The tree::

    ExecutorError                     base of every error the engine reports
    +-- ToolNotFound                  unknown tool id or version           (non-retryable)
    +-- InvalidParameters             parameters or options fail validation (non-retryable)
    |   +-- ExecutionNotFound         no execution has this id
    +-- PermissionDenied              another tenant's execution, refused   (non-retryable)
    +-- ResourceLimitExceeded         a limit was breached or cannot be enforced (non-retryable)
    +-- ExecutionFailed               the tool raised or exited non-zero    (retryable)
    +-- TimeoutExceeded               the tool ran past its timeout
    +-- ExecutionCancelled            the execution was cancelled
    +-- DatabaseError                 the SQL projection failed             (retryable)
    +-- InternalError                 anything else, including an unreachable Temporal
    +-- ConfigError                   a bad ``STEPFLOW_*`` value (raised before anything runs)

Inside Temporal an error travels as ``ApplicationError(message, type=<kind name>, non_retryable=...)``.
:func:`to_application_error` makes one; :func:`from_failure` turns whatever Temporal hands back
(``WorkflowFailureError`` wrapping ``ActivityError`` wrapping ``ApplicationError``...) into the same kind.
"""

from __future__ import annotations

from typing import ClassVar

from temporalio.exceptions import ApplicationError, CancelledError, TimeoutError


class ExecutorError(Exception):
    """Base of every error the engine reports; ``kind`` is the spec's error name."""

    kind: ClassVar[str] = "ExecutorError"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ToolNotFound(ExecutorError):
    """The tool id (or the requested version of it) is not registered."""

    kind = "ToolNotFound"


class InvalidParameters(ExecutorError):
    """The parameters or options do not match what the tool or the engine accepts."""

    kind = "InvalidParameters"


class ExecutionNotFound(InvalidParameters):
    """No execution has this id (its kind is InvalidParameters: the caller named something that is not there)."""


class PermissionDenied(ExecutorError):
    """The caller may not see or act on this execution."""

    kind = "PermissionDenied"


class ResourceLimitExceeded(ExecutorError):
    """A resource limit was breached, or was asked for and cannot be enforced here."""

    kind = "ResourceLimitExceeded"


class ExecutionFailed(ExecutorError):
    """The tool itself failed."""

    kind = "ExecutionFailed"
    retryable = True


class TimeoutExceeded(ExecutorError):
    """The tool did not finish within its timeout."""

    kind = "TimeoutExceeded"


class ExecutionCancelled(ExecutorError):
    """The execution was cancelled before it finished."""

    kind = "ExecutionCancelled"


class DatabaseError(ExecutorError):
    """The SQL projection could not be read or written."""

    kind = "DatabaseError"
    retryable = True


class InternalError(ExecutorError):
    """An unexpected failure inside the engine, or an unreachable Temporal server."""

    kind = "InternalError"


class ConfigError(ExecutorError):
    """A configuration value is invalid; the message names the variable."""

    kind = "ConfigError"


ERROR_KINDS: dict[str, type[ExecutorError]] = {
    cls.kind: cls
    for cls in (
        ToolNotFound,
        InvalidParameters,
        PermissionDenied,
        ResourceLimitExceeded,
        ExecutionFailed,
        TimeoutExceeded,
        ExecutionCancelled,
        DatabaseError,
        InternalError,
        ConfigError,
    )
}

NON_RETRYABLE_KINDS: tuple[str, ...] = tuple(kind for kind, cls in ERROR_KINDS.items() if not cls.retryable)


def to_application_error(error: ExecutorError) -> ApplicationError:
    """Wrap an ExecutorError so Temporal carries its kind and retryability."""
    return ApplicationError(error.message, type=error.kind, non_retryable=not error.retryable)


def from_failure(error: BaseException) -> ExecutorError:
    """Unwrap a Temporal failure chain into the ExecutorError kind it carries."""
    if isinstance(error, ExecutorError):
        return error
    cause: BaseException | None = error
    saw_timeout = False
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type in ERROR_KINDS:
            return ERROR_KINDS[cause.type](cause.message)
        if isinstance(cause, TimeoutError):
            saw_timeout = True
        if isinstance(cause, CancelledError):
            return ExecutionCancelled("the execution was cancelled")
        if isinstance(cause, ApplicationError):
            return ExecutionFailed(f"{cause.type or 'Error'}: {cause.message}")
        cause = getattr(cause, "cause", None) or cause.__cause__
    if saw_timeout:
        return TimeoutExceeded("the execution exceeded its timeout")
    return InternalError(str(error) or type(error).__name__)

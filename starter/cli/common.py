"""Helpers every CLI command module shares: settings, connections, output, errors and exit codes.

A command body is an ``async`` function run with :func:`run`; it raises :class:`~stepflow.errors.ExecutorError`
kinds and :func:`run` turns them into one clear line on stderr (plus a JSON object on stdout with ``--json``)
and the kind's exit code from :data:`EXIT_CODES`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import typer
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from starter import console
from starter.executor import Executor
from stepflow.config import Settings, load_settings
from stepflow.constraints import describe_validation_error
from stepflow.db.projection import Projection
from stepflow.errors import DatabaseError, ExecutorError, InternalError, InvalidParameters
from stepflow.identity import LOCAL_ADMIN, Principal, Role
from stepflow.logging import configure_logging
from stepflow.models import ExecutionResult, ExecutionStatus
from stepflow.temporal_config import resolve

#: Exit code of each error kind; 0 is reserved for a completed execution (or a command that succeeded).
EXIT_CODES: dict[str, int] = {
    "ExecutionFailed": 1,
    # 2 is the usage error of typer/click (unknown option, missing argument)
    "TimeoutExceeded": 3,
    "ExecutionCancelled": 4,
    "ToolNotFound": 5,
    "InvalidParameters": 6,
    "PermissionDenied": 7,
    "ResourceLimitExceeded": 8,
    "DatabaseError": 9,
    "InternalError": 10,
    "ConfigError": 11,
}
EXIT_NOT_FINISHED = 12
"""Exit code of ``result`` for an execution that is still pending or running."""

_STATUS_EXIT_CODES: dict[ExecutionStatus, int] = {
    ExecutionStatus.COMPLETED: 0,
    ExecutionStatus.FAILED: EXIT_CODES["ExecutionFailed"],
    ExecutionStatus.TIMED_OUT: EXIT_CODES["TimeoutExceeded"],
    ExecutionStatus.CANCELLED: EXIT_CODES["ExecutionCancelled"],
    ExecutionStatus.PENDING: EXIT_NOT_FINISHED,
    ExecutionStatus.RUNNING: EXIT_NOT_FINISHED,
}


def exit_code_for_error(error: ExecutorError) -> int:
    """The exit code of an error kind (InternalError's for kinds the table does not know)."""
    return EXIT_CODES.get(error.kind, EXIT_CODES["InternalError"])


def exit_code_for_result(result: ExecutionResult) -> int:
    """0 for a completed execution; the error kind's code for a failed one; the status's code otherwise."""
    if result.status is ExecutionStatus.FAILED and result.error is not None:
        return EXIT_CODES.get(result.error.type, EXIT_CODES["ExecutionFailed"])
    return _STATUS_EXIT_CODES[result.status]


VERBOSE = False
"""Set by the global ``--verbose`` option: commands then say which Temporal connection they use."""


def settings() -> Settings:
    """The ``STEPFLOW_*`` settings; a bad value raises ConfigError naming the variable.

    With ``--verbose``, the Temporal profile, address and namespace in use are printed on stderr."""
    config = load_settings()
    if VERBOSE:
        print_connection(config)
    return config


def print_connection(config: Settings) -> None:
    """What ``--verbose`` prints (stderr): the Temporal profile, address, namespace, TLS and API key in use, each
    with the variable or profile entry it came from; never the secrets themselves."""
    for line in resolve(config.temporal).describe():
        console.stderr.print(line, markup=False, highlight=False)


def setup_logging(config: Settings, *, quiet: bool = True) -> None:
    """structlog for a CLI process; ``quiet`` keeps library chatter (Temporal's) at warnings and above."""
    configure_logging(fmt=config.log_format, level=logging.WARNING if quiet else logging.INFO)


@asynccontextmanager
async def executor(
    config: Settings | None = None, *, as_tenant: str | None = None, role: Role = Role.VIEWER
) -> AsyncIterator[Executor]:
    """An Executor connected to Temporal and the projection, as the local admin; closed afterwards.

    With ``as_tenant`` (a command's ``--tenant``) it acts as a ``role`` of that tenant instead, so another
    tenant's execution is refused as it would be for that tenant's own callers.
    """
    config = config or settings()
    setup_logging(config)  # its warnings (the projection unreachable...) go to stderr, never into the output
    connected = await Executor.connect(config, principal=LOCAL_ADMIN)
    try:
        if as_tenant is None:
            yield connected
        else:
            yield connected.for_principal(Principal(tenant_id=as_tenant, user_id=LOCAL_ADMIN.user_id, role=role))
    finally:
        await connected.close()


@asynccontextmanager
async def projection(config: Settings | None = None) -> AsyncIterator[Projection]:
    """The SQL projection only (no Temporal needed): for lists and tools."""
    config = config or settings()
    setup_logging(config)
    opened = await Projection.open(config.resolved_database_url)
    try:
        yield opened
    finally:
        await opened.close()


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def to_json(value: Any) -> str:
    """Pretty JSON of a model, a list of models or plain data (datetimes as ISO 8601)."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False, default=str)


def print_json(value: Any) -> None:
    """Write JSON to stdout, unstyled, so scripts can parse it."""
    typer.echo(to_json(value))


def fail(error: ExecutorError, *, as_json: bool = False) -> NoReturn:
    """Report an error (stderr; also stdout as JSON with ``--json``) and exit with its kind's code."""
    if as_json:
        print_json({"error": {"type": error.kind, "message": error.message}})
    console.stderr.print(f"[bold red]{error.kind}[/]: {error.message}", markup=True, highlight=False)
    raise typer.Exit(exit_code_for_error(error))


def run(body: Coroutine[Any, Any, int | None], *, as_json: bool = False) -> None:
    """Run an async command body; ExecutorError becomes a message and an exit code, Ctrl-C exits 130, and
    anything unexpected an InternalError line (exit 10) rather than a traceback."""
    try:
        code = asyncio.run(body)
    except ExecutorError as error:
        fail(error, as_json=as_json)
    except RPCError as error:  # Temporal went away or refused a call after we connected
        fail(InternalError(f"the Temporal server refused or lost a request: {error.message}"), as_json=as_json)
    except SQLAlchemyError as error:
        fail(DatabaseError(f"the projection database failed: {error}"), as_json=as_json)
    except ValidationError as error:  # an option a model refuses (a filter's tenant, ...)
        fail(InvalidParameters(f"invalid option: {describe_validation_error(error)}"), as_json=as_json)
    except KeyboardInterrupt:
        console.stderr.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as error:  # a bug: one line, as every other error, and the traceback only when asked for
        if VERBOSE:
            console.stderr.print_exception()
        fail(
            InternalError(f"unexpected {type(error).__name__}: {error} (run with --verbose for the traceback)"),
            as_json=as_json,
        )
    if code:
        raise typer.Exit(code)

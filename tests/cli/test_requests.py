"""Option parsing of run/start/list and the exit-code table, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from starter.cli.common import EXIT_CODES, EXIT_NOT_FINISHED, exit_code_for_result
from starter.cli.requests import RequestContext, build_request, parse_params, parse_time
from stepflow.errors import ERROR_KINDS, InvalidParameters
from stepflow.models import ErrorInfo, ExecutionMetadata, ExecutionResult, ExecutionStatus, Priority


def test_values_are_json_when_they_parse_else_strings() -> None:
    params = parse_params(["n=3", "ok=true", "xs=[1,2]", "s=hello world", 'q="3"', "empty=", "eq=a=b"], None)
    assert params == {"n": 3, "ok": True, "xs": [1, 2], "s": "hello world", "q": "3", "empty": "", "eq": "a=b"}


def test_pairs_override_params_json() -> None:
    assert parse_params(["a=2"], '{"a": 1, "b": 1}') == {"a": 2, "b": 1}


@pytest.mark.parametrize(
    ("pairs", "params", "says"),
    [
        (["novalue"], None, "-p expects key=value"),
        (["=1"], None, "-p expects key=value"),
        ([], "{", "--params is not valid JSON"),
        ([], '"text"', "--params must be a JSON object, got str"),
    ],
)
def test_malformed_parameters(pairs: list[str], params: str | None, says: str) -> None:
    with pytest.raises(InvalidParameters, match=says):
        parse_params(pairs, params)


@pytest.mark.parametrize(
    ("timeout", "retries", "delay", "says"),
    [
        (-1.0, 0, None, "--timeout: must be more than 0 and at most 604800 seconds"),
        (0.0, 0, None, "--timeout: must be more than 0"),
        (float("inf"), 0, None, "--timeout: must be a finite number of seconds"),
        (float("nan"), 0, None, "--timeout: must be a finite number of seconds"),
        (1e300, 0, None, "--timeout: must be more than 0 and at most 604800 seconds \\(7 days\\); got 1e\\+300"),
        (None, -1, None, "--retries: Input should be greater than or equal to 0"),
        (None, 0, -5, "--retry-delay .*: must be 0 or more"),
        (None, 0, 100_000_000_000_000_000, "--retry-delay .*: must be 0 or more and at most 3600 seconds"),
        (None, 0, 10**400, "--retry-delay .*: must be a finite number of seconds"),
    ],
)
def test_bad_options(timeout: float | None, retries: int, delay: int | None, says: str) -> None:
    with pytest.raises(InvalidParameters, match=says):
        build_request("echo", None, None, timeout=timeout, retries=retries, retry_delay=delay)


def test_a_full_request() -> None:
    request = build_request(
        "sleep",
        ["seconds=2"],
        None,
        version="1.0.0",
        context=RequestContext(tenant="acme", user="ann", session="s1", request_id="r1"),
        timeout=1.5,
        retries=2,
        retry_delay=250,
        priority=Priority.HIGH,
    )
    assert request.parameters == {"seconds": 2}
    assert (request.version, request.context.tenant_id, request.context.request_id) == ("1.0.0", "acme", "r1")
    assert request.options.timeout == timedelta(seconds=1.5)
    assert request.options.retry_delay == timedelta(milliseconds=250)
    assert (request.options.retry_count, request.options.priority) == (2, Priority.HIGH)


def test_times_are_ages_or_iso_8601() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_time("10m", "--since", now=now) == now - timedelta(minutes=10)
    assert parse_time("1d", "--since", now=now) == now - timedelta(days=1)
    assert parse_time("2026-01-01T00:00:00", "--since") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("2026-01-01T01:00:00+01:00", "--since") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidParameters, match="--until expects an ISO 8601 time"):
        parse_time("yesterday", "--until")


def test_every_error_kind_has_its_own_exit_code() -> None:
    assert set(EXIT_CODES) == set(ERROR_KINDS)
    codes = [*EXIT_CODES.values(), EXIT_NOT_FINISHED]
    assert len(set(codes)) == len(codes)
    assert 0 not in codes and 2 not in codes and all(0 < code < 126 for code in codes)


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (ExecutionStatus.COMPLETED, None, 0),
        (ExecutionStatus.FAILED, "ExecutionFailed", EXIT_CODES["ExecutionFailed"]),
        (ExecutionStatus.FAILED, "InvalidParameters", EXIT_CODES["InvalidParameters"]),
        (ExecutionStatus.TIMED_OUT, "TimeoutExceeded", EXIT_CODES["TimeoutExceeded"]),
        (ExecutionStatus.CANCELLED, "ExecutionCancelled", EXIT_CODES["ExecutionCancelled"]),
        (ExecutionStatus.RUNNING, None, EXIT_NOT_FINISHED),
    ],
)
def test_exit_code_of_a_result(status: ExecutionStatus, error: str | None, code: int) -> None:
    result = ExecutionResult(
        execution_id="exec-1",
        status=status,
        error=ErrorInfo(type=error, message="m") if error else None,
        metadata=ExecutionMetadata(tool_id="echo"),
    )
    assert exit_code_for_result(result) == code

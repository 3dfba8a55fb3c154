"""The execution commands through the real console script, against the dev server and a real worker."""

from __future__ import annotations

import asyncio
import time

import pytest

from starter.cli.common import EXIT_CODES, EXIT_NOT_FINISHED
from starter.server import free_port
from tests.cli.conftest import Cli, CliResult

pytestmark = [pytest.mark.dev_server, pytest.mark.usefixtures("cli_worker")]


async def until(cli: Cli, check: str, *args: str, deadline: float = 30.0) -> CliResult:
    """Run ``stepflow *args --json`` until its JSON ``status`` equals ``check``."""
    end = time.monotonic() + deadline
    while True:
        result = await cli(*args, "--json")
        if result.json().get("status") == check or time.monotonic() > end:
            return result
        await asyncio.sleep(0.3)


async def test_run_echo_prints_completed_result(cli: Cli) -> None:
    result = await cli("run", "echo", "-p", "message=hi", "-p", "count=3", "--json")
    assert result.code == 0, result
    body = result.json()
    assert body["status"] == "completed"
    assert body["output"] == {"message": "hi", "count": 3}
    assert body["error"] is None
    assert body["execution_id"].startswith("exec-")


async def test_run_params_json_and_human_output(cli: Cli) -> None:
    result = await cli("run", "echo", "--params", '{"message": "from json", "n": [1, 2]}', "-p", "n=7")
    assert result.code == 0, result
    assert "completed" in result.stdout
    assert '"message": "from json"' in result.stdout
    assert '"n": 7' in result.stdout


async def test_run_fail_exits_with_execution_failed(cli: Cli) -> None:
    result = await cli("run", "fail", "-p", "message=boom", "--json")
    assert result.code == EXIT_CODES["ExecutionFailed"], result
    body = result.json()
    assert body["status"] == "failed"
    assert body["error"] == {"type": "ExecutionFailed", "message": "boom"}


async def test_run_retries_then_completes(cli: Cli) -> None:
    result = await cli("run", "flaky", "-p", "failures=1", "--retries", "1", "--retry-delay", "100", "--json")
    assert result.code == 0, result
    assert result.json()["output"] == {"attempt": 2, "failures": 1}


async def test_run_timeout_exits_with_timeout_code(cli: Cli) -> None:
    result = await cli("run", "sleep", "-p", "seconds=30", "--timeout", "1", "--json")
    assert result.code == EXIT_CODES["TimeoutExceeded"], result
    body = result.json()
    assert body["status"] == "timed_out"
    assert body["error"]["type"] == "TimeoutExceeded"


async def test_start_status_cancel_result(cli: Cli) -> None:
    started = await cli("start", "sleep", "-p", "seconds=60", "--json")
    assert started.code == 0, started
    execution_id = started.json()["execution_id"]

    running = await until(cli, "running", "status", execution_id)
    assert running.code == 0, running
    assert running.json()["execution_id"] == execution_id
    assert running.json()["status"] == "running"

    unfinished = await cli("result", execution_id, "--json")
    assert unfinished.code == EXIT_NOT_FINISHED, unfinished

    cancelled = await cli("cancel", execution_id, "--json")
    assert cancelled.code == 0, cancelled
    assert cancelled.json() == {"execution_id": execution_id, "cancel_requested": True}

    result = await until(cli, "cancelled", "result", execution_id)
    assert result.code == EXIT_CODES["ExecutionCancelled"], result
    assert result.json()["status"] == "cancelled"
    assert result.json()["error"]["type"] == "ExecutionCancelled"

    again = await cli("cancel", execution_id, "--json")
    assert again.code == 0, again
    assert again.json() == {"execution_id": execution_id, "cancel_requested": False, "status": "cancelled"}


async def test_cancel_wait_prints_the_cancelled_result(cli: Cli) -> None:
    execution_id = (await cli("start", "sleep", "-p", "seconds=60", "--json")).json()["execution_id"]
    await until(cli, "running", "status", execution_id)
    result = await cli("cancel", execution_id, "--wait", "--json")
    assert result.code == 0, result
    assert result.json()["status"] == "cancelled"


async def test_list_filters(cli: Cli) -> None:
    ok = await cli("run", "echo", "-p", "message=a", "--tenant", "t-one", "--user", "ann", "--json")
    bad = await cli("run", "fail", "--tenant", "t-two", "--user", "bob", "--json")
    ok_id, bad_id = ok.json()["execution_id"], bad.json()["execution_id"]

    everything = await cli("list", "--json")
    assert everything.code == 0, everything
    assert {row["execution_id"] for row in everything.json()} == {ok_id, bad_id}

    for args, expected in (
        (("--tenant", "t-one"), {ok_id}),
        (("--user", "bob"), {bad_id}),
        (("--status", "failed"), {bad_id}),
        (("--tool", "echo"), {ok_id}),
        (("--tool", "echo", "--status", "failed"), set()),
        (("--since", "1h"), {ok_id, bad_id}),
        (("--until", "2000-01-01T00:00:00"), set()),
        (("--limit", "1"), {bad_id}),
    ):
        listed = await cli("list", *args, "--json")
        assert listed.code == 0, listed
        assert {row["execution_id"] for row in listed.json()} == expected, args

    table = await cli("list", "--tenant", "t-two")
    assert bad_id in table.stdout and "failed" in table.stdout


async def test_tools_lists_registered_tools(cli: Cli) -> None:
    result = await cli("tools", "--json")
    assert result.code == 0, result
    tools = {tool["id"]: tool for tool in result.json()}
    assert {"echo", "sleep", "flaky", "fail"} <= set(tools)
    assert tools["sleep"]["parameters_schema"]["properties"]["seconds"]["type"] == "number"
    table = await cli("tools")
    assert "sleep" in table.stdout and "1.0.0" in table.stdout


@pytest.mark.parametrize(
    ("args", "kind", "says"),
    [
        (("--params", "{not json"), "InvalidParameters", "--params is not valid JSON"),
        (("--params", "[1, 2]"), "InvalidParameters", "--params must be a JSON object"),
        (("--timeout", "-5"), "InvalidParameters", "--timeout: must be more than 0"),
        (("-p", "no-equals-sign"), "InvalidParameters", "-p expects key=value"),
        (("--retries", "-1"), "InvalidParameters", "--retries: Input should be greater than or equal to 0"),
    ],
)
async def test_malformed_options_start_nothing(cli: Cli, args: tuple[str, ...], kind: str, says: str) -> None:
    result = await cli("run", "echo", *args, "--json")
    assert result.code == EXIT_CODES[kind], result
    assert result.json()["error"]["type"] == kind
    assert says in result.stderr
    assert (await cli("list", "--json")).json() == []


async def test_unknown_tool_and_version_are_tool_not_found_and_the_worker_keeps_going(cli: Cli) -> None:
    result = await cli("run", "no-such-tool")
    assert result.code == EXIT_CODES["ToolNotFound"], result
    assert "unknown tool 'no-such-tool'" in result.stderr
    assert "stepflow tools" in result.stderr

    result = await cli("run", "echo", "--version", "9.9.9")
    assert result.code == EXIT_CODES["ToolNotFound"], result
    assert "has no version '9.9.9'" in result.stderr

    result = await cli("run", "sleep", "-p", "seconds=oops", "--json")
    assert result.code == EXIT_CODES["InvalidParameters"], result
    assert result.json()["error"]["type"] == "InvalidParameters"
    assert "seconds" in result.json()["error"]["message"]

    assert (await cli("run", "echo", "-p", "message=still here", "--json")).code == 0


async def test_unknown_execution_is_a_clear_error(cli: Cli) -> None:
    result = await cli("status", "exec-does-not-exist")
    assert result.code == EXIT_CODES["InvalidParameters"], result
    assert "no execution with id 'exec-does-not-exist'" in result.stderr


async def test_unreachable_server_says_how_to_start_one(cli: Cli) -> None:
    closed = f"127.0.0.1:{free_port()}"
    result = await cli("run", "echo", "-p", "message=hi", STEPFLOW_TEMPORAL_ADDRESS=closed)
    assert result.code == EXIT_CODES["InternalError"], result
    assert f"cannot reach the Temporal server at {closed}" in result.stderr
    assert "stepflow server" in result.stderr
    assert "Traceback" not in result.stderr


async def test_bad_configuration_names_the_variable(cli: Cli) -> None:
    result = await cli("list", STEPFLOW_EXECUTOR_DEFAULT_TIMEOUT="-3")
    assert result.code == EXIT_CODES["ConfigError"], result
    assert "STEPFLOW_EXECUTOR_DEFAULT_TIMEOUT" in result.stderr


async def test_start_and_status_keep_their_output_clean_while_the_projection_is_down(cli: Cli) -> None:
    """The unreachable database is reported on stderr: stdout stays the id alone, or JSON a script can parse."""
    down = {"STEPFLOW_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"}
    started = await cli("start", "echo", "-p", "message=hi", **down)
    assert started.code == 0, started
    execution_id = started.stdout.strip()
    assert started.stdout == f"{execution_id}\n" and execution_id.startswith("exec-"), started
    assert "projection database unreachable" in started.stderr
    for _ in range(100):
        shown = await cli("status", execution_id, "--json", **down)
        assert shown.code == 0, shown
        if shown.json()["status"] == "completed":
            break
        await asyncio.sleep(0.3)
    assert shown.json()["status"] == "completed", shown

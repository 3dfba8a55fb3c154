"""Bad input through the ``stepflow`` command line: each case its documented exit code and a typed error line
naming what was wrong, never a traceback, and nothing started.

Every case is a real ``stepflow`` process. They run concurrently, once, in a module fixture (a CLI process
spends most of its second importing): the refused ones against a task queue with its tools registered and no
worker, the valid ones against a queue with a worker. Then Temporal's visibility and the executions table of
the first queue hold nothing, and ``stepflow run echo`` there still completes once a worker runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from temporalio.testing import WorkflowEnvironment

from starter.cli.common import EXIT_CODES
from stepflow.config import Settings
from stepflow.constraints import MAX_PARAMETERS_DEPTH
from stepflow.db.projection import Projection
from tests.cli.conftest import STEPFLOW, CliResult, cli_environment, run_cli
from tests.conftest import make_settings, running_worker
from worker.build import build_registry, running_projection

pytestmark = [pytest.mark.dev_server, pytest.mark.timeout(300)]

USAGE = 2
"""typer's exit code for an option it cannot parse."""
CONCURRENCY = max(2, 2 * (os.cpu_count() or 1))
SQL = "'; DROP TABLE executions; --"
ARG_CHUNK = 120_000
"""Characters per ``-p`` value of the huge cases: Linux takes at most 128 KiB in one argument."""


@dataclass(frozen=True)
class Case:
    """A command line, the exit code it must end with, the error kind (None: a usage error) and what it names."""

    args: tuple[str | bytes, ...]
    kind: str | None
    mentions: tuple[str, ...] = ()
    big_stack: bool = False
    """Raise the stack limit of the process: Linux sizes the room for arguments from it (5.5 MB of them)."""

    @property
    def code(self) -> int:
        return USAGE if self.kind is None else EXIT_CODES[self.kind]


def start(*args: str | bytes, kind: str | None = "InvalidParameters", says: tuple[str, ...] = ()) -> Case:
    return Case(("start", *args, "--json"), kind, says)


def read(command: str, execution_id: str, *says: str, kind: str = "InvalidParameters") -> Case:
    return Case((command, execution_id, "--json"), kind, says)


def huge(total: int) -> tuple[str, ...]:
    """``-p`` pairs carrying ``total`` characters of parameters in all."""
    pairs: list[str] = []
    left = total
    while left > 0:
        pairs += ["-p", f"k{len(pairs)}={'a' * min(ARG_CHUNK, left)}"]
        left -= ARG_CHUNK
    return tuple(pairs)


DEEP_LIST = '{"x": ' + "[" * 50_000 + "]" * 50_000 + "}"
DEEP_65 = '{"x": ' + '{"a": ' * MAX_PARAMETERS_DEPTH + "1" + "}" * MAX_PARAMETERS_DEPTH + "}"

REFUSED: dict[str, Case] = {
    # --params and -p: JSON that is too deep, not finite, not JSON, too big
    "params-deep-50000": start("echo", "--params", DEEP_LIST, says=("--params is nested too deeply", "64 levels")),
    "p-deep-50000": start("echo", "-p", "x=" + "[" * 50_000 + "]" * 50_000, says=("-p is nested too deeply",)),
    "params-deep-65": start("echo", "--params", DEEP_65, says=("nested deeper than 64 levels",)),
    "params-nan-inf": start("echo", "--params", '{"x": Infinity, "y": NaN}', says=("NaN or Infinity",)),
    "p-nan": start("echo", "-p", "x=NaN", says=("x: nan",)),
    "params-not-json": start("echo", "--params", "{not json", says=("--params is not valid JSON",)),
    "p-invalid-utf8": start("echo", "-p", b"x=\xff\xfe", says=("lone surrogate",)),
    "params-5.5MB": Case(
        ("start", "echo", *huge(5_500_000), "--json"),
        "InvalidParameters",
        ("STEPFLOW_EXECUTOR_MAX_PARAMETERS_BYTES",),
        big_stack=True,
    ),
    # --timeout, --retry-delay, --retries, --priority: every edge
    "timeout-1e300": start("echo", "--timeout", "1e300", says=("--timeout: must be more than 0 and at most 604800",)),
    "timeout-inf": start("echo", "--timeout", "inf", says=("--timeout: must be a finite number of seconds",)),
    "timeout-nan": start("echo", "--timeout", "nan", says=("--timeout: must be a finite number of seconds",)),
    "timeout-max+1": start("echo", "--timeout", "604801", says=("--timeout", "7 days")),
    "timeout-text": start("echo", "--timeout", "soon", kind=None, says=("--timeout",)),
    "delay-1e17": start("echo", "--retry-delay", "100000000000000000", says=("--retry-delay", "at most 3600 seconds")),
    "delay-10e400": start("echo", "--retry-delay", "1" + "0" * 400, says=("--retry-delay", "finite")),
    "retries-above-cap": start("echo", "--retries", "4", says=("retry_count=4", "STEPFLOW_EXECUTOR_MAX_RETRY_COUNT")),
    "priority-unknown": start("echo", "--priority", "urgent", kind=None, says=("--priority",)),
    # the tool, its version and its schema
    "tool-empty": start("", says=("TOOL: '' is not a tool id",)),
    "tool-sql": start(f"echo{SQL}", says=("TOOL:", "is not a tool id")),
    "tool-unknown": start("no-such-tool", kind="ToolNotFound", says=("unknown tool 'no-such-tool'",)),
    "version-sql": start("echo", "--version", f"1.0{SQL}", says=("--version:",)),
    "version-unknown": start("echo", "--version", "9.9.9", kind="ToolNotFound", says=("9.9.9",)),
    "schema-wrong-type": start("flaky", "-p", "failures=many", says=("parameters.failures", "'integer'")),
    "schema-command-type": start("wc", "-p", "text=3", says=("parameters.text: 3 is not of type 'string'",)),
    "schema-command-extra": start("wc", "-p", "text=hi", "-p", f"{SQL}=1", says=("was unexpected",)),
    # who: tenant, user, session, request id
    "tenant-sql": start("echo", "--tenant", f"acme{SQL}", says=("--tenant:",)),
    "tenant-unicode": start("echo", "--tenant", "t\u00e9nant", says=("--tenant:",)),
    "user-escape": start("echo", "--user", "ann\x1b[2J", says=("--user:", "U+001B")),
    "user-invalid-utf8": start("echo", "--user", b"ann\xff", says=("--user:", "U+DCFF")),
    "session-newline": start("echo", "--session", "s\nINFO fake line", says=("--session:", "U+000A")),
    "request-id-del": start("echo", "--request-id", "r\x7f", says=("--request-id:", "U+007F")),
    # execution ids given to reads
    "status-empty": read("status", "", "must not be empty"),
    "logs-empty": read("logs", "", "must not be empty"),
    "result-sql": read("result", f"exec-1{SQL}", "is not an execution id"),
    "cancel-long": read("cancel", "e" * 1001, "is not an execution id"),
    "logs-control": read("logs", "exec-\x1b[2J", "is not an execution id"),
    "status-unknown": read("status", "exec-00000000-0000-0000-0000-000000000000", "no execution with id"),
    # list's options
    "list-since-overflow": Case(("list", "--since", "99999999999d", "--json"), "InvalidParameters", ("--since",)),
    "list-limit-zero": Case(("list", "--limit", "0", "--json"), "InvalidParameters", ("limit",)),
    "metrics-tenant-control": Case(
        ("metrics", "--tenant", "acme\x1b[2J", "--json"), "InvalidParameters", ("cannot be an id to filter on",)
    ),
}

VALID: dict[str, tuple[str, ...]] = {
    "unicode": ("--params", '{"text": "h\u00e9llo \U0001f389 \u4e2d\u6587 \u05e2\u05d1\u05e8\u05d9\u05ea"}'),
    "sql-everywhere": (
        *("-p", f"q={SQL}", "--user", f"o'brien{SQL}", "--session", 'x"; DELETE FROM tools; --'),
        *("--request-id", SQL + uuid.uuid4().hex[:8]),  # unique: a request id names one execution server-wide
    ),
    "control-in-values": ("-p", "text=esc\x1b[31m tab\t new\nline"),
    "options-at-limits": ("--timeout", "604800", "--retry-delay", "3600000", "--retries", "3"),
}


@contextmanager
def big_stack() -> Iterator[None]:
    """Processes spawned meanwhile get room for 5.5 MB of arguments (Linux gives them a quarter of the stack
    limit at exec). Raising this process's soft limit is harmless: its threads' stacks are sized at start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = 64 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_STACK, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))


async def run_case(case: Case, env: dict[str, str], gate: asyncio.Semaphore) -> CliResult:
    async with gate:
        if not case.big_stack:
            return await run_cli(*case.args, env=env, within=120)  # type: ignore[arg-type]
        with big_stack():
            process = await asyncio.create_subprocess_exec(
                STEPFLOW, *case.args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode is not None
        return CliResult(("start", "echo", "<5.5 MB of -p>"), process.returncode, out.decode(), err.decode())


@dataclass
class Corpus:
    """What every case printed and how it exited, and where the refused ones ran."""

    refused: dict[str, CliResult]
    valid: dict[str, CliResult]
    settings: Settings
    env: dict[str, str]


@pytest.fixture(scope="module")
async def corpus(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Corpus]:
    address = dev_env.client.service_client.config.target_host
    refusing = make_settings(tmp_path_factory.mktemp("cli-refusing"))
    accepting = make_settings(tmp_path_factory.mktemp("cli-accepting"))
    refusing_env, accepting_env = cli_environment(refusing, address), cli_environment(accepting, address)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with running_projection(refusing, build_registry(refusing)), running_worker(dev_env, accepting):
        refused = asyncio.gather(*(run_case(case, refusing_env, gate) for case in REFUSED.values()))
        valid = asyncio.gather(
            *(run_case(Case(("run", "echo", *args, "--json"), None), accepting_env, gate) for args in VALID.values())
        )
        refused_results, valid_results = await asyncio.gather(refused, valid)
    yield Corpus(
        dict(zip(REFUSED, refused_results, strict=True)),
        dict(zip(VALID, valid_results, strict=True)),
        refusing,
        refusing_env,
    )


def assert_clean_exit(result: CliResult) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream and "Fatal Python error" not in stream, result


@pytest.mark.parametrize("name", REFUSED)
def test_a_bad_command_line_is_a_typed_error_with_its_exit_code(corpus: Corpus, name: str) -> None:
    case, result = REFUSED[name], corpus.refused[name]
    assert_clean_exit(result)
    assert result.code == case.code, result
    if case.kind is None:  # typer's usage error names the option
        text = result.stderr
    else:
        error = json.loads(result.stdout)["error"]
        assert error["type"] == case.kind, result
        text = error["message"]
        assert result.stderr.startswith(f"{case.kind}: "), result
    for mention in case.mentions:
        assert mention in text, result


@pytest.mark.parametrize("name", VALID)
def test_a_valid_edge_input_completes(corpus: Corpus, name: str) -> None:
    result = corpus.valid[name]
    assert_clean_exit(result)
    assert result.code == 0, result
    assert result.json()["status"] == "completed"


def test_sql_metacharacters_come_back_verbatim(corpus: Corpus) -> None:
    output = corpus.valid["sql-everywhere"].json()
    assert output["output"] == {"q": SQL}
    assert output["metadata"]["user_id"] == f"o'brien{SQL}"
    assert output["metadata"]["session_id"] == 'x"; DELETE FROM tools; --'


async def test_nothing_was_started_and_echo_still_runs_there(dev_env: WorkflowEnvironment, corpus: Corpus) -> None:
    queue = corpus.settings.temporal.task_queue
    assert [e async for e in dev_env.client.list_workflows(f'TaskQueue="{queue}"')] == []
    projection = await Projection.open(corpus.settings.resolved_database_url)
    try:
        assert await projection.reader.list_executions() == []
    finally:
        await projection.close()
    async with running_worker(dev_env, corpus.settings):
        result = await run_cli("run", "echo", "-p", "still=alive", "--json", env=corpus.env)
    assert result.code == 0, result
    assert result.json()["output"] == {"still": "alive"}

"""A command that worked never exits as if it failed: no abort at interpreter shutdown, under load.

Before ``starter.cli.main`` ended with ``os._exit``, about 3 % of parallel ``stepflow start`` calls printed
their execution id and then died with SIGABRT ("Fatal Python error: PyGILState_Release"): the Temporal SDK's
Rust threads called back into an interpreter that was finalizing. Here 200 ``stepflow start`` processes run
in waves while two lanes of ``stepflow worker`` processes are started and stopped with SIGTERM, 20 in all,
and every process must exit with its documented status and print no fatal error.

Slow (two minutes on two idle cores, more on a busy machine: each process spends most of a second of CPU
importing), so it is marked ``faults`` and runs with the fault-injection suite.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from temporalio.testing import WorkflowEnvironment

from stepflow.config import Settings
from tests.cli.conftest import STEPFLOW, CliResult, run_cli
from worker.build import build_registry, running_projection

pytestmark = [pytest.mark.dev_server, pytest.mark.faults, pytest.mark.timeout(900)]

STARTS = 200
WAVE = 20
"""``stepflow start`` processes alive at once."""
WORKER_LANES = 2
CYCLES_PER_LANE = 10
FATAL = "Fatal Python error"


async def start_wave(index: int, gate: asyncio.Semaphore, env: dict[str, str]) -> CliResult:
    async with gate:
        return await run_cli("start", "echo", "-p", f"n={index}", env=env, within=180)


async def worker_cycle(env: dict[str, str]) -> tuple[int, str]:
    """Start ``stepflow worker``, wait until it polls, SIGTERM it; its exit status and its output."""
    process = await asyncio.create_subprocess_exec(
        STEPFLOW, "worker", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not any("worker started" in line for line in lines):
        remaining = deadline - time.monotonic()
        line = await asyncio.wait_for(process.stdout.readline(), max(remaining, 0.1))
        if not line:
            break  # it ended before it started: its status and output tell why
        lines.append(line.decode(errors="replace"))
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(process.stdout.read(), 60)
    code = await asyncio.wait_for(process.wait(), 60)
    return code, "".join(lines) + rest.decode(errors="replace")


async def worker_lane(env: dict[str, str]) -> list[tuple[int, str]]:
    return [await worker_cycle(env) for _ in range(CYCLES_PER_LANE)]


async def test_parallel_starts_and_worker_restarts_all_exit_with_their_documented_status(
    dev_env: WorkflowEnvironment, settings: Settings, cli_env: dict[str, str]
) -> None:
    async with running_projection(settings, build_registry(settings)):
        pass  # the tools table, as a worker leaves it: the starts need not wait for the first worker
    began = time.monotonic()
    gate = asyncio.Semaphore(WAVE)
    starts = asyncio.gather(*(start_wave(index, gate, cli_env) for index in range(STARTS)))
    lanes = asyncio.gather(*(worker_lane(cli_env) for _ in range(WORKER_LANES)))
    started, cycles = await asyncio.gather(starts, lanes)
    elapsed = time.monotonic() - began

    aborted = [result for result in started if result.code == -signal.SIGABRT or FATAL in result.stderr]
    assert not aborted, f"{len(aborted)} of {STARTS} starts aborted at exit, e.g. {aborted[0]}"
    failed = [result for result in started if result.code != 0]
    assert not failed, f"{len(failed)} of {STARTS} starts did not exit 0, e.g. {failed[0]}"
    ids = [result.stdout.strip() for result in started]
    assert all(execution_id.startswith("exec-") for execution_id in ids)
    assert len(set(ids)) == STARTS, "each start printed its own execution id"

    workers = [cycle for lane in cycles for cycle in lane]
    assert len(workers) == WORKER_LANES * CYCLES_PER_LANE
    for code, output in workers:
        assert FATAL not in output and "Traceback" not in output, output
        assert code == 0, f"a worker stopped with SIGTERM exited {code}:\n{output}"
        assert "worker started" in output and "worker stopped" in output, output

    query = f'TaskQueue="{settings.temporal.task_queue}"'
    for _ in range(100):  # visibility lags the starts a little
        listed = {execution.id async for execution in dev_env.client.list_workflows(query)}
        if len(listed) >= STARTS:
            break
        await asyncio.sleep(0.2)
    assert listed == set(ids), "every start that exited 0 did start its execution"
    print(f"{STARTS} starts and {len(workers)} worker cycles in {elapsed:.1f} s")

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
from tests.cli.conftest import STEPFLOW, CliResult
from worker.build import build_registry, running_projection

pytestmark = [pytest.mark.dev_server, pytest.mark.faults, pytest.mark.timeout(900)]

STARTS = 200
WAVE = 20
"""``stepflow start`` processes alive at once."""
WORKER_LANES = 2
CYCLES_PER_LANE = 10
FATAL = "Fatal Python error"


class Spawned:
    """Every process the test starts, so that none outlives it when the test fails."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: list[asyncio.subprocess.Process] = []

    async def spawn(self, *args: str, merge_stderr: bool = False) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            STEPFLOW,
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        )
        self.processes.append(process)
        return process

    async def kill_the_rest(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def start_one(index: int, gate: asyncio.Semaphore, spawned: Spawned) -> CliResult:
    async with gate:
        args = ("start", "echo", "-p", f"n={index}")
        process = await spawned.spawn(*args)
        out, err = await asyncio.wait_for(process.communicate(), 300)
        assert process.returncode is not None
        return CliResult(args, process.returncode, out.decode(), err.decode())


async def worker_cycle(spawned: Spawned) -> tuple[int, str]:
    """Start ``stepflow worker``, wait until it polls, SIGTERM it; its exit status and its output."""
    process = await spawned.spawn("worker", merge_stderr=True)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while not any("worker started" in line for line in lines):
        line = await asyncio.wait_for(process.stdout.readline(), max(deadline - time.monotonic(), 0.1))
        if not line:
            break  # it ended before it started: its status and output tell why
        lines.append(line.decode(errors="replace"))
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(process.stdout.read(), 120)
    code = await asyncio.wait_for(process.wait(), 120)
    return code, "".join(lines) + rest.decode(errors="replace")


async def worker_lane(spawned: Spawned) -> list[tuple[int, str]]:
    return [await worker_cycle(spawned) for _ in range(CYCLES_PER_LANE)]


async def test_parallel_starts_and_worker_restarts_all_exit_with_their_documented_status(
    dev_env: WorkflowEnvironment, settings: Settings, cli_env: dict[str, str]
) -> None:
    async with running_projection(settings, build_registry(settings)):
        pass  # the tools table, as a worker leaves it: the starts need not wait for the first worker
    began = time.monotonic()
    gate, spawned = asyncio.Semaphore(WAVE), Spawned(cli_env)
    try:
        started, cycles = await asyncio.gather(
            asyncio.gather(*(start_one(index, gate, spawned) for index in range(STARTS))),
            asyncio.gather(*(worker_lane(spawned) for _ in range(WORKER_LANES))),
        )
    finally:
        await spawned.kill_the_rest()
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

"""The sandbox itself, with real processes and real limits: each limit holds and is named when breached."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from stepflow.errors import ExecutionFailed, InternalError, ResourceLimitExceeded
from stepflow.sandbox import classify, run_sandboxed
from tests.sandbox.helpers import ENV, PY, limits, requires_sandbox, run_py, sandbox_pids

pytestmark = requires_sandbox


async def test_a_plain_run_reports_output_status_and_usage():
    lines: list[tuple[str, str]] = []
    result, error = await run_py(
        "import sys; print('out'); print('err', file=sys.stderr); print(sys.stdin.read()); sys.exit(3)",
        stdin=b"fed",
        on_line=lambda stream, line: lines.append((stream, line)),
    )
    assert result.exit_code == 3 and result.stdout == b"out\nfed\n"
    assert ("stdout", "out") in lines and ("stderr", "err") in lines and ("stdout", "fed") in lines
    assert result.cpu_time_ms is not None and result.cpu_time_ms > 0 and result.max_rss_kb
    assert isinstance(error, ExecutionFailed) and "status 3" in error.message and "err" in error.message


async def test_a_memory_bomb_is_stopped_by_the_memory_cgroup():
    ok, error = await run_py("x = bytearray(16 * 2**20); print(len(x))", limits(memory_mb=128))
    assert error is None and ok.stdout == b"16777216\n"
    assert ok.memory_peak_bytes is not None and 16 * 2**20 < ok.memory_peak_bytes < 128 * 2**20
    result, error = await run_py("x = bytearray(512 * 2**20)", limits(memory_mb=128))
    assert isinstance(error, ResourceLimitExceeded) and error.message.startswith("memory_mb"), error
    assert result.oom_kills >= 1 and "OOM killer" in error.message  # read from the cgroup, not from the text


async def test_cpu_spin_is_killed_by_rlimit_cpu():
    started = time.monotonic()
    result, error = await run_py("while True: pass", limits(cpu_seconds=1))
    assert time.monotonic() - started < 10
    assert result.signal == signal.SIGXCPU and result.cpu_time_ms is not None and result.cpu_time_ms >= 500
    assert isinstance(error, ResourceLimitExceeded) and error.message.startswith("cpu_seconds")
    code = "import signal\nsignal.signal(signal.SIGXCPU, lambda *_: None)\nwhile True: pass"
    result, error = await run_py(code, limits(cpu_seconds=1))  # SIGKILL one second later
    assert result.signal == signal.SIGKILL
    assert isinstance(error, ResourceLimitExceeded) and error.message.startswith("cpu_seconds")


async def test_fork_bomb_is_capped_by_the_process_limit_and_leaves_nothing():
    code = "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(1000)\n        os._exit(0)"
    result, error = await run_py(code, limits(max_processes=8))
    assert isinstance(error, ResourceLimitExceeded) and error.message.startswith("max_processes"), result
    assert sandbox_pids() == []


async def test_a_shell_fork_bomb_never_exceeds_the_process_limit():
    counts: list[int] = []

    async def sample() -> None:
        while True:
            counts.append(len(sandbox_pids()))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    lim = limits(max_processes=8, cpu_seconds=2)
    try:
        result = await run_sandboxed(
            ["bash", "-c", ":(){ :|:& };:; sleep 100"], ENV, lim, deadline=2.0, cancel_grace=0.5
        )
    finally:
        sampler.cancel()
    assert 3 <= max(counts) <= 8, counts
    assert result.deadline_exceeded and sandbox_pids() == []
    error = classify(result, lim, "bash")
    assert isinstance(error, ResourceLimitExceeded) and error.message.startswith("max_processes")


async def test_network_is_off_unless_allowed():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = (
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('connected')\nexcept OSError as exc:\n    print('blocked', exc)"
        )
        off, _ = await run_py(code)
        on, _ = await run_py(code, limits(network=True))
    assert off.stdout.startswith(b"blocked"), off.stdout
    assert on.stdout == b"connected\n"


async def test_writes_outside_the_working_directory_fail(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o777)  # even a world-writable directory of the worker is out of reach
    marker = f"stepflow-sandbox-test-{os.getpid()}"
    code = f"""
import os
print(os.getcwd())
open("inside.txt", "w").write("fine")
for path in ["{data_dir}/x", "/tmp/{marker}", "/var/tmp/{marker}", "/dev/shm/{marker}", "/etc/{marker}", "/{marker}"]:
    try:
        open(path, "w").write("escaped")
        print("WROTE", path)
    except OSError as exc:
        print("refused", path, exc.strerror)
"""
    result, error = await run_py(code)
    assert error is None, error
    out = result.stdout.decode()
    assert "WROTE" not in out.replace(f"WROTE /tmp/{marker}", "").replace(f"WROTE /var/tmp/{marker}", "").replace(
        f"WROTE /dev/shm/{marker}", ""
    ), out
    assert list(data_dir.iterdir()) == []
    # the tool's /tmp, /var/tmp and /dev/shm are its own working directory, removed afterwards
    workdir = out.splitlines()[0]
    assert _existing([f"{d}/{marker}" for d in ("/tmp", "/var/tmp", "/dev/shm")] + [workdir]) == []


def _existing(paths: list[str]) -> list[str]:
    return [path for path in paths if os.path.exists(path)]


async def test_huge_output_is_cut_at_the_limit_and_the_tree_killed():
    started = time.monotonic()
    result, error = await run_py(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits(max_output_bytes=100_000)
    )
    assert isinstance(error, ResourceLimitExceeded) and error.message.startswith("max_output_bytes")
    assert len(result.stdout) <= 100_000 and time.monotonic() - started < 10
    assert sandbox_pids() == []


async def test_cancel_kills_the_whole_tree_including_escaped_grandchildren():
    ready = asyncio.Event()
    code = """
import os, signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)    # ignores SIGTERM: only SIGKILL after the grace stops it
subprocess.Popen(["sleep", "1000"], start_new_session=True)   # a grandchild that left the process group
if os.fork() == 0:
    os.setsid()
    time.sleep(1000)
print("ready", flush=True)
time.sleep(1000)
"""
    task = asyncio.create_task(
        run_py(code, cancel_grace=0.5, on_line=lambda stream, line: ready.set() if line == "ready" else None)
    )
    await asyncio.wait_for(ready.wait(), 20)
    assert len(sandbox_pids()) >= 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sandbox_pids() == []


async def test_deadline_stops_the_tree():
    result, _ = await run_py("import time; time.sleep(1000)", deadline=0.5, cancel_grace=0.5)
    assert result.deadline_exceeded and not result.ok
    assert sandbox_pids() == []


async def test_parameters_reach_the_program_as_one_literal_argument():
    nasty = "; rm -rf / $(touch /tmp/pwned) `id` 'single' \"double\"\nsecond line & | > x"
    result = await run_sandboxed(
        [PY, "-S", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", nasty], ENV, limits()
    )
    import json

    assert json.loads(result.stdout) == [nasty]


async def test_a_missing_program_is_reported():
    result = await run_sandboxed(["no-such-program-xyz"], ENV, limits())
    assert result.exec_error is not None and "no-such-program-xyz" in result.exec_error
    assert isinstance(classify(result, limits(), "no-such-program-xyz"), InternalError)


async def test_the_worker_directory_is_hidden_and_the_working_directory_is_capped():
    code = f"""
import os
cwd = "{os.getcwd()}"  # not in the sandbox's root at all
listing = os.listdir(cwd) if os.path.isdir(cwd) else []
print(os.path.exists("/usr/bin/python3"), os.path.exists(cwd + "/pyproject.toml"), listing)
"""
    result, error = await run_py(code)
    assert error is None and result.stdout == b"True False []\n", result
    fill = "\n".join(["block = b'x' * 2**20", "with open('/tmp/fill', 'wb') as file:", "    for _ in range(200):"])
    fill += "\n        file.write(block)"
    result, error = await run_py(fill, limits(memory_mb=64))
    # files in the working directory are memory: the memory cgroup (or, without one, the tmpfs's size) stops them
    assert isinstance(error, ResourceLimitExceeded) and error.message.startswith("memory_mb"), result


def test_cgroups_of_dead_workers_are_swept():
    from stepflow.sandbox import cgroups

    hierarchy = cgroups.support().hierarchies[0]
    parent = hierarchy.base.parent
    dead = parent / "stepflow-999999999"  # no such pid
    (dead / "run-z1-1").mkdir(parents=True)
    cgroups.sweep(parent)
    assert not dead.exists() and hierarchy.base.exists()


async def test_a_worker_killed_outright_leaves_no_tool_behind():
    tool = "\n".join(
        [
            "import subprocess, time",
            "subprocess.Popen(['sleep', '1000'], start_new_session=True)",
            "print('up', flush=True)",
            "time.sleep(1000)",
        ]
    )
    worker_code = f"""
import asyncio
from stepflow.sandbox import DEFAULT_LIMITS, run_sandboxed
code = {tool!r}
def line(stream, text):
    print(text, flush=True)
argv = ["/usr/bin/python3", "-S", "-c", code]
asyncio.run(run_sandboxed(argv, {{"PATH": "/usr/bin:/bin"}}, DEFAULT_LIMITS, on_line=line))
"""
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", worker_code, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2]
    )
    assert worker.stdout is not None
    try:
        assert await asyncio.wait_for(worker.stdout.readline(), 20) == b"up\n"
        assert len(sandbox_pids(worker.pid)) >= 2
        worker.kill()
        await worker.wait()
        assert await _gone_within(5.0, worker.pid)
    finally:
        for pid in sandbox_pids(worker.pid):  # never leave a sleeper behind, even when the test fails
            os.kill(pid, signal.SIGKILL)


async def _gone_within(seconds: float, worker_pid: int) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not sandbox_pids(worker_pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_concurrent_executions_each_get_their_own_process_budget():
    # 1 + 3 processes each, under max_processes=4: fine alone, and fine side by side only if the budgets are separate
    code = (
        "import subprocess\nkids = [subprocess.Popen(['sleep', '0.5']) for _ in range(3)]\nfor kid in kids: kid.wait()"
    )
    runs = await asyncio.gather(*(run_py(code, limits(max_processes=4)) for _ in range(3)))
    assert [error for _, error in runs] == [None, None, None], runs

"""Worker processes and what /proc says about a process: resident memory, CPU time.

The product's worker is ``stepflow worker``, configured by ``STEPFLOW_*`` variables as a deployment would be; the
bare one is ``python -m benchmarks.bare_worker`` with the same variables. Both run as children of the suite, each
in its own process group, so the suite can measure and stop them on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPFLOW = Path(sys.executable).parent / "stepflow"
STOP_WITHIN = 20.0  # seconds a worker gets to shut down gracefully


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} reports no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (the suite: the clients and the Executor)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def clean_environment(variables: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``STEPFLOW_*`` setting, plus ``variables``."""
    kept = {key: value for key, value in os.environ.items() if not key.startswith("STEPFLOW_")}
    return {**kept, "PYTHONPATH": str(ROOT), **variables}


class WorkerProcess:
    """A worker started as a child process; :meth:`stop` ends it (gracefully unless asked not to)."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @classmethod
    def product(cls, env: Mapping[str, str], log_path: Path) -> WorkerProcess:
        """``stepflow worker`` with these settings."""
        return cls([str(STEPFLOW), "worker"], clean_environment(env), log_path)

    @classmethod
    def bare(cls, env: Mapping[str, str], task_queue: str, log_path: Path) -> WorkerProcess:
        """The bare worker, sized by the product's settings ``env``, polling ``task_queue``."""
        argv = [sys.executable, "-m", "benchmarks.bare_worker", task_queue]
        return cls(argv, clean_environment(env), log_path)

    @property
    def pid(self) -> int:
        assert self.process is not None, "the worker was not started"
        return self.process.pid

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
            )

    def check_alive(self) -> None:
        """RuntimeError naming the log when the worker has exited."""
        if self.process is not None and self.process.returncode is not None:
            name = " ".join(self.argv[1:])
            raise RuntimeError(f"worker {name} exited with {self.process.returncode}; see {self.log_path}")

    async def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM (graceful) or SIGKILL the worker's process group, and wait for it (SIGKILL after STOP_WITHIN s)."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_WITHIN)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()

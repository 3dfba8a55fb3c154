"""Wall time and CPU time of one measured run, per unit of work (an execution, a step)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from benchmarks.harness.processes import cpu_seconds, own_cpu_seconds
from benchmarks.harness.rounds import Measurement

# the CPU figures `timed` reports when given a worker and a server, with their labels
CPU_FIGURES = (("client_cpu", "client"), ("worker_cpu", "worker"), ("server_cpu", "server"))


async def timed(run: Callable[[], Awaitable[Any]], *, per: int, pids: Mapping[str, int]) -> Measurement:
    """Await ``run()``; milliseconds per unit (``ms``) and CPU milliseconds per unit of this process (``client_cpu``,
    the clients and the Executor) and of each process in ``pids`` (``{name}_cpu``, e.g. the worker and the server).
    """
    own, others = own_cpu_seconds(), {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - started
    found = {"ms": elapsed * 1000 / per, "client_cpu": (own_cpu_seconds() - own) * 1000 / per}
    for name, pid in pids.items():
        found[f"{name}_cpu"] = (cpu_seconds(pid) - others[name]) * 1000 / per
    return found

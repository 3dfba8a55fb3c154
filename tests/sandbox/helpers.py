"""Shared helpers of the sandbox tests: run Python snippets in the sandbox, find sandbox processes."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stepflow.errors import ExecutorError
from stepflow.sandbox import DEFAULT_LIMITS, SandboxLimits, SandboxResult, classify, run_sandboxed, sandbox_unavailable
from stepflow.sandbox.uids import SLOTS, UID_BASE, UID_POOL

PY = "/usr/bin/python3"
ENV = {"PATH": "/usr/bin:/bin"}
TOOLS_FILE = Path(__file__).with_name("tools.toml")


def _unsupported() -> str | None:
    if not os.path.exists(PY):
        return f"the sandbox tests run {PY}, which this machine lacks"
    return sandbox_unavailable()


requires_sandbox = pytest.mark.skipif(_unsupported() is not None, reason=str(_unsupported()))
"""Skip where the sandbox cannot be built (not root, old kernel) or the test interpreter is missing."""


def limits(**changes: Any) -> SandboxLimits:
    return replace(DEFAULT_LIMITS, **changes)


async def run_py(code: str, lim: SandboxLimits | None = None, **kw: Any) -> tuple[SandboxResult, ExecutorError | None]:
    lim = lim or DEFAULT_LIMITS
    result = await run_sandboxed([PY, "-S", "-c", code], ENV, lim, **kw)
    return result, classify(result, lim, "python3")


def sandbox_pids(worker_pid: int | None = None) -> list[int]:
    """Live processes running as a sandbox uid of this process's pool (or of the worker process ``worker_pid``).

    Scoped to one worker's range: other test sessions on the machine run sandboxed tools too.
    """
    if worker_pid is None:
        uids = UID_POOL.uids
    else:
        base = UID_BASE + (worker_pid % 100) * SLOTS
        uids = range(base, base + SLOTS)
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                uid = os.stat(f"/proc/{name}").st_uid
                with open(f"/proc/{name}/stat") as file:
                    state = file.read().rpartition(")")[2].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if uid in uids and state != "Z":
                found.append(int(name))
    return found

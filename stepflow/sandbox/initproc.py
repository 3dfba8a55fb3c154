"""What a sandbox's init does around any tool, a program or a Python function: status lines to the worker,
and reaping every process of its namespace once the tool has exited. Shared by the launcher and the Python
tool runner, which both act as a sandbox's init; stdlib only, like them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import Any


def report(fd: int, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(message) + "\n").encode())


def reap(tool: int | None) -> tuple[int, int]:
    """Reap every process until ``tool`` exits, then kill and reap whatever is left (double forks, daemons): the
    tool's (wait status, largest RSS reaped). Only this init is left in the namespace afterwards."""
    max_rss, wait_status = 0, 0
    while tool is not None:
        pid, status, usage = os.wait4(-1, 0)
        max_rss = max(max_rss, usage.ru_maxrss)
        if pid == tool:
            wait_status = status
            break
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)  # from PID 1: every other process of the namespace
    with contextlib.suppress(ChildProcessError):
        while True:
            max_rss = max(max_rss, os.wait4(-1, 0)[2].ru_maxrss)
    return wait_status, max_rss

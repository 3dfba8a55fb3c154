"""The sandbox tools run in: namespaces, a minimal root, cgroups or rlimits, an unprivileged uid, seccomp.

Worker side:

- :mod:`stepflow.sandbox.runner`: :func:`run_sandboxed`, streaming, the output limit, stopping the process tree;
- :mod:`stepflow.sandbox.outcome`: :func:`classify`, what a finished run means (naming a breached limit);
- :mod:`stepflow.sandbox.limits`: effective limits, and how each is enforced on this machine;
- :mod:`stepflow.sandbox.cgroups`: cgroup v1/v2 detection, a cgroup per run, its accounting;
- :mod:`stepflow.sandbox.client`: the zygote, started once per worker;
- :mod:`stepflow.sandbox.probe`: whether this machine can build the sandbox at all;
- :mod:`stepflow.sandbox.uids`: a uid per execution and /proc scans by uid;
- :mod:`stepflow.sandbox.pipes`: the run's pipes, stdin fed without blocking;
- :mod:`stepflow.sandbox.streams`: bounded line splitting and logging.

Inside the zygote (standard library only, so that it stays small and starts fast):
:mod:`~stepflow.sandbox.zygote`, :mod:`~stepflow.sandbox.launcher`, :mod:`~stepflow.sandbox.rootfs`,
:mod:`~stepflow.sandbox.kernel`, :mod:`~stepflow.sandbox.seccomp` and, for Python tools,
:mod:`~stepflow.sandbox.pytool`.

The names below are imported on first use: importing a child-side module must not pull in the worker's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepflow.sandbox.limits import DEFAULT_LIMITS, SandboxLimits, resolve_limits
    from stepflow.sandbox.outcome import classify
    from stepflow.sandbox.probe import sandbox_unavailable
    from stepflow.sandbox.runner import SandboxResult, run_sandboxed

_EXPORTS = {
    "DEFAULT_LIMITS": "stepflow.sandbox.limits",
    "SandboxLimits": "stepflow.sandbox.limits",
    "resolve_limits": "stepflow.sandbox.limits",
    "classify": "stepflow.sandbox.outcome",
    "sandbox_unavailable": "stepflow.sandbox.probe",
    "SandboxResult": "stepflow.sandbox.runner",
    "run_sandboxed": "stepflow.sandbox.runner",
}

__all__ = [
    "DEFAULT_LIMITS",
    "SandboxLimits",
    "SandboxResult",
    "classify",
    "resolve_limits",
    "run_sandboxed",
    "sandbox_unavailable",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

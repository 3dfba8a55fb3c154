"""The sandbox command tools run in: namespaces, rlimits, an unprivileged uid, a private working directory.

- :mod:`stepflow.sandbox.launcher`: the program that builds the sandbox and execs the tool (run, never imported);
- :mod:`stepflow.sandbox.runner`: :func:`run_sandboxed`, streaming, the output limit, killing the process tree;
- :mod:`stepflow.sandbox.limits`: effective limits;
- :mod:`stepflow.sandbox.probe`: whether this machine can enforce them;
- :mod:`stepflow.sandbox.uids`: a uid per execution and /proc scans by uid;
- :mod:`stepflow.sandbox.streams`: bounded line splitting and logging.
"""

from stepflow.sandbox.limits import DEFAULT_LIMITS, SandboxLimits, resolve_limits
from stepflow.sandbox.probe import sandbox_unavailable
from stepflow.sandbox.runner import SandboxResult, classify, run_sandboxed

__all__ = [
    "DEFAULT_LIMITS",
    "SandboxLimits",
    "SandboxResult",
    "classify",
    "resolve_limits",
    "run_sandboxed",
    "sandbox_unavailable",
]

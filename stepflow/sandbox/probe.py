"""Whether this machine can build the sandbox at all, probed once per worker process.

The sandbox needs Linux 5.12+ (``mount_setattr``) and a worker running as root (namespaces, mounts, cgroups,
switching to the tool's uid). :func:`sandbox_unavailable` runs ``true`` through the zygote in a full sandbox,
which also starts the zygote so that the first real run finds its launchers ready; when the probe fails every
sandboxed tool is refused with ResourceLimitExceeded and the probe's reason, rather than run without its limits.
:func:`sandbox_features` says what the probe found: the cgroup controllers in use and whether the seccomp filter
is loaded.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import sys
import time

from stepflow.sandbox import cgroups
from stepflow.sandbox.limits import DEFAULT_LIMITS
from stepflow.sandbox.runner import build_spec, zygote
from stepflow.sandbox.uids import UID_POOL

_PROBE_TIMEOUT = 30.0


def _read_until_eof(fd: int, timeout: float) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and select.select([fd], [], [], left)[0]:
        if not (chunk := os.read(fd, 65536)):
            return data
        data += chunk
    raise TimeoutError(f"no answer from the sandbox's launcher within {timeout:.0f}s")


def _run_true() -> tuple[dict[str, object], str]:
    """Run ``true`` in the sandbox, synchronously; (its launcher's status, its stderr)."""
    support = cgroups.support()
    uid = UID_POOL.acquire()
    fds: list[int] = []
    try:
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        fds += [status_r, err_r]
        theirs = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)]
        theirs += [err_w, status_w]
        try:
            spec = build_spec(["true"], {"PATH": "/usr/bin:/bin"}, uid, DEFAULT_LIMITS, support, (), None)
            zygote("command").send(spec, theirs)
        finally:
            for fd in theirs:
                os.close(fd)
        status: dict[str, object] = {}
        for line in _read_until_eof(status_r, _PROBE_TIMEOUT).decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                status.update(json.loads(line))
        stderr = _read_until_eof(err_r, _PROBE_TIMEOUT).decode(errors="replace")
        if isinstance(name := status.get("cgroup"), str) and support.hierarchies:
            run = cgroups.RunCgroup.named(support, name)
            deadline = time.monotonic() + _PROBE_TIMEOUT
            while run.pids() and time.monotonic() < deadline:
                time.sleep(0.001)
            run.remove()
        return status, stderr
    finally:
        for fd in fds:
            os.close(fd)
        UID_POOL.release(uid)


@functools.cache
def _probe() -> tuple[str | None, dict[str, object]]:
    if not sys.platform.startswith("linux"):
        return f"sandboxed tools need Linux namespaces; this is {sys.platform}", {}
    if os.geteuid() != 0:
        return (
            "sandboxed tools need a worker running as root (to create namespaces, confine the file system and run "
            f"the tool as an unprivileged uid); this worker runs as uid {os.geteuid()}"
        ), {}
    try:
        status, stderr = _run_true()
    except OSError as exc:
        return f"the sandbox probe could not run: {exc}", {}
    if status.get("exit") != 0:
        detail = str(status.get("error") or status.get("exec_error") or stderr.strip() or status)[-500:]
        return f"this machine cannot create the sandbox (namespaces, mounts, setuid): {detail}", status
    return None, status


def sandbox_unavailable() -> str | None:
    """None when this machine can enforce the sandbox, else the reason it cannot (probed once)."""
    return _probe()[0]


def sandbox_features() -> dict[str, object]:
    """What the sandbox enforces here: the cgroup controllers in use and whether seccomp is on."""
    support = cgroups.support()
    return {
        "cgroups": support.label,
        "controllers": {c: f"v{h.version}" for c in cgroups.CONTROLLERS if (h := support.hierarchy(c)) is not None},
        "missing": dict(support.missing),
        "seccomp": bool(_probe()[1].get("seccomp")),
    }

"""The zygote: a small process the worker starts once, which keeps pre-forked launchers ready for the next tool.

Started by :class:`stepflow.sandbox.client.ZygoteClient` as ``python -I -c <boot> PATHS KIND SOCKET WORKER MOUNT
EXTRA``
with an empty environment (so no secret of the worker is in its memory, nor in its launchers' or tools'). It
imports only the standard library, the sandbox's child-side modules and (for the ``python`` kind) the modules of
the isolated Python tools it is asked to run. It builds the seccomp filter once, then keeps :data:`POOL`
launchers (:mod:`stepflow.sandbox.launcher`) forked, each one with its namespaces and base root already made,
all waiting on the worker's request socket. A launcher that takes a request tells the zygote, which forks a
replacement; so a run costs the worker one message and the launcher one fork (the tool's), and no interpreter
starts per execution.

It dies with the worker (``PR_SET_PDEATHSIG``), its launchers with it, their tools with them. It ignores SIGINT
and SIGHUP (a terminal's Ctrl-C is the worker's to handle) and reaps its launchers automatically.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import itertools
import json
import os
import select
import signal
import socket
import sys

from stepflow.sandbox import cgroups, kernel, seccomp
from stepflow.sandbox.launcher import Sandbox, Shared, launch

POOL = 2
REFILL_DELAY = 0.01

BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from stepflow.sandbox.zygote import main; main(sys.argv[2:])"
)


def _sandbox(hierarchies: tuple[cgroups.Hierarchy, ...], name: str) -> Sandbox:
    """The cgroups of the next launcher, made now so that its init joins them before any request."""
    try:
        return Sandbox(name, cgroups.open_run(hierarchies, name))
    except OSError as exc:
        return Sandbox(name, [], f"cannot create the run's cgroups: {exc}")


def main(argv: list[str]) -> None:
    """``KIND SOCKET_FD WORKER_PID MOUNT_POINT EXTRA_PATHS HIERARCHIES``: serve until the worker closes the socket
    or dies."""
    kind, sock_fd, worker_pid, mount_point = argv[0], int(argv[1]), int(argv[2]), argv[3]
    extra_paths = tuple(json.loads(argv[4]))
    hierarchies = cgroups.hierarchies_from_json(argv[5])
    os.set_inheritable(sock_fd, False)
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != worker_pid:
        sys.exit(1)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    taken_r, taken_w = os.pipe()
    shared = Shared(
        sock=socket.socket(fileno=sock_fd),
        taken_fd=taken_w,
        host_net_fd=os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC),
        mount_point=mount_point,
        zygote_pid=os.getpid(),
        seccomp=seccomp.build(),
        extra_paths=extra_paths,
        inherited=[taken_r],
    )
    if kind == "python":
        from stepflow.sandbox import pytool

        pytool.warm_up()
    _serve(shared, hierarchies, taken_r)


def _serve(shared: Shared, hierarchies: tuple[cgroups.Hierarchy, ...], taken: int) -> None:
    """Keep :data:`POOL` launchers ready. Launchers write one line per event on the ``taken`` pipe: ``t`` (took a
    request), ``e`` (the worker closed its socket) or ``m <module>`` (a Python tool's module this zygote has not
    imported yet: importing it here spares every later launcher the import)."""
    idle, pending = 0, b""
    launched = itertools.count(1)
    while True:
        gc.freeze()  # what is imported now stays untouched by the collector: fewer copied pages per fork
        while idle < POOL:
            sandbox = _sandbox(hierarchies, f"z{os.getpid()}-{next(launched)}")
            if os.fork() == 0:
                launch(shared, sandbox)
            for _, fd in sandbox.cgroups:
                os.close(fd)
            idle += 1
        pending += os.read(taken, 4096)
        *events, pending = pending.split(b"\n")
        for event in events:
            if event == b"e":
                return
            if event == b"t":
                idle -= 1
            elif event.startswith(b"m "):
                with contextlib.suppress(Exception):  # the launcher reports the import's own failure
                    importlib.import_module(event[2:].decode())
        if idle and not pending:  # a launcher is still ready: refill a little later, not while this run starts
            select.select([taken], [], [], REFILL_DELAY)

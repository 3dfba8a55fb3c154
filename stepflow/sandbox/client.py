"""The worker's side of the zygote: start it once, hand it runs, start it again should it have died.

Two zygotes at most per worker process, started on first use: ``command`` (lean: the standard library and the
sandbox's child-side modules) and ``python`` (which also imports the isolated Python tools' modules, so forks of
it can run them). A run is one ``SOCK_SEQPACKET`` message carrying descriptors: a memfd holding the run's spec
as JSON (no size limit, nothing on disk), then the run's pipes and ``cgroup.procs`` files, in the order
:func:`stepflow.sandbox.launcher.receive` reads them.

A Python tool in the sandbox imports from the worker's module path: the zygote binds the directories of
``sys.path`` read-only into its root, and for a directory that is (or holds) the worker's working directory only
the packages imported from it, so the worker's data never becomes visible.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepflow.sandbox.cgroups import Hierarchy, hierarchies_to_json
from stepflow.sandbox.zygote import BOOT


def _private(path: str, private: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + "/") or p.startswith(path + "/") for p in private)


def import_paths(private: Sequence[str]) -> list[str]:
    """Read-only paths a Python tool needs to import what the worker imported, none of them ``private``."""
    paths = {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    paths.add(os.path.dirname(os.path.realpath(os.__file__)))
    public = {p for p in paths if not _private(p, private) and p != "/"}
    for module in list(sys.modules.values()):
        location = getattr(module, "__file__", None)
        if not location or "." in getattr(module, "__name__", "."):
            continue
        location = os.path.realpath(location)
        top = os.path.dirname(location) if location.endswith("__init__.py") else location
        if any(top == p or top.startswith(p + "/") for p in public):
            continue
        if os.path.isdir(top) and not _private(top, private):
            public.add(top)
    return sorted(public)


class ZygoteClient:
    """One zygote of this worker process, started on first use."""

    def __init__(self, kind: str, mount_point: Path, hierarchies: Sequence[Hierarchy]) -> None:
        self.kind = kind
        self._mount_point = mount_point
        self._hierarchies = hierarchies_to_json(hierarchies)
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _start(self) -> socket.socket:
        if self._process is not None:
            self._process.poll()
        if self._sock is not None:
            self._sock.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._mount_point.mkdir(mode=0o700, exist_ok=True)
        extra = import_paths([os.getcwd()]) if self.kind == "python" else []
        argv = [sys.executable, "-I", "-c", BOOT, json.dumps(sys.path), self.kind, str(theirs.fileno())]
        argv += [str(os.getpid()), str(self._mount_point), json.dumps(extra), self._hierarchies]
        with theirs:
            self._process = subprocess.Popen(
                argv,
                pass_fds=(theirs.fileno(),),
                env={},
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        self._sock = ours
        return ours

    def send(self, spec: dict[str, Any], fds: Sequence[int]) -> None:
        """Hand one run to a launcher (OSError if the zygote cannot be reached even after a restart)."""
        memfd = os.memfd_create("stepflow-run", os.MFD_CLOEXEC)
        try:
            with open(memfd, "wb", closefd=False) as file:
                file.write(json.dumps(spec).encode())
            os.lseek(memfd, 0, os.SEEK_SET)
            with self._lock:
                alive = self._process is not None and self._process.poll() is None
                sock = self._sock if alive and self._sock is not None else self._start()
                try:
                    socket.send_fds(sock, [b"run"], [memfd, *fds])
                except (BrokenPipeError, ConnectionError):
                    socket.send_fds(self._start(), [b"run"], [memfd, *fds])
        finally:
            os.close(memfd)

    def close(self) -> None:
        """Close the socket: idle launchers exit, then the zygote."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._process is not None:
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                self._process = None

"""The sandbox launcher: a tiny stdlib-only program the worker runs as ``python -I -S launcher.py SPEC_FILE``.

It is never imported by the worker (it must start fast and must not touch the worker's state). As root it:

1. ``unshare(CLONE_NEWNS | CLONE_NEWPID [| CLONE_NEWNET])``: a private mount table, a fresh PID namespace and,
   unless the network is allowed, a fresh network namespace with no interface up (not even loopback).
2. Covers the hidden paths (the worker's own directory) with empty tmpfs, mounts a fresh tmpfs capped at
   ``workdir_bytes`` and owned by the tool's uid on the per-execution working directory, makes every mount
   read-only (``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)``) except that one, and bind-mounts it over
   ``/tmp``, ``/var/tmp`` and ``/dev/shm``. The tmpfs vanishes with the namespace.
   The launcher dies with the worker (``PR_SET_PDEATHSIG``), and the init with the launcher, so even a worker
   killed outright leaves no tool behind.
3. Forks the namespace's init (PID 1, root, ignores SIGTERM so the tool gets its grace period), which mounts a
   fresh ``/proc`` and forks the tool: rlimits (AS, CPU, NPROC, CORE), no supplementary groups, an unprivileged
   uid/gid of its own, ``no_new_privs``, default signal dispositions, then ``execvpe``.
4. Init reaps every process until the tool exits, then reports the tool's wait status and the rusage of all the
   processes it reaped as one JSON line on the status descriptor, and exits: the kernel then kills whatever is
   left in the PID namespace, so nothing outlives the tool.

Status lines (JSON, one per line, on the file descriptor named in the spec): ``{"init_pid": N, "ready_at": T}``
from the outer process (N as the worker sees it, T its ``time.monotonic()`` once the sandbox is set up), then
``{"exit": code | null, "signal": n | null, "cpu_ms": x, "max_rss_kb": k}`` or ``{"error": "..."}`` when the
sandbox could not be set up, or ``{"exec_error": "..."}`` when the program could not be started.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: the launcher must start fast
    from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
SYS_MOUNT_SETATTR = 442
MOUNT_ATTR_RDONLY = 1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SETUP_FAILED = 125
TMP_DIRS = ("/var/tmp", "/dev/shm", "/tmp")

libc = ctypes.CDLL(None, use_errno=True)


class MountAttr(ctypes.Structure):
    """``struct mount_attr`` of mount_setattr(2)."""

    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def report(status_fd: int, message: dict[str, Any]) -> None:
    os.write(status_fd, (json.dumps(message) + "\n").encode())


def check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def set_readonly(dirfd: int, path: str, flags: int, readonly: bool) -> None:
    attr = MountAttr(MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY, 0, 0)
    result = libc.syscall(
        SYS_MOUNT_SETATTR, dirfd, path.encode(), flags, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))
    )
    check(result, f"mount_setattr {path or dirfd}")


def confine_filesystem(spec: dict[str, Any]) -> None:
    """Everything read-only, the hidden paths empty, the working directory a private size-capped tmpfs that also
    stands in for the temporary directories."""
    workdir, uid = spec["workdir"], spec["uid"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for path in spec["hide"]:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=1,mode=0755")
    size = spec["workdir_bytes"]
    mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0700,uid={uid},gid={spec['gid']}")
    work_fd = os.open(workdir, os.O_PATH | os.O_DIRECTORY)
    os.chdir(workdir)
    set_readonly(AT_FDCWD, "/", AT_RECURSIVE, True)
    set_readonly(work_fd, "", AT_EMPTY_PATH, False)
    for directory in TMP_DIRS:
        if os.path.isdir(directory) and not os.path.islink(directory):
            mount(f"/proc/self/fd/{work_fd}", directory, None, MS_BIND)
    os.close(work_fd)


def exec_tool(spec: dict[str, Any], status_fd: int) -> NoReturn:
    """In the tool's process: limits, identity, signals, then exec. Never returns."""
    try:
        for name, (soft, hard) in spec["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.set_inheritable(status_fd, False)
    except OSError as exc:
        report(status_fd, {"error": f"cannot apply the sandbox to the tool's process: {exc}"})
        os._exit(SETUP_FAILED)
    program = spec["argv"][0]
    candidates = [program] if "/" in program else [os.path.join(d or ".", program) for d in spec["path"].split(":")]
    error = "not found on PATH " + spec["path"]
    for candidate in candidates:
        try:
            os.execve(candidate, spec["argv"], spec["env"])
        except OSError as exc:
            error = f"{candidate}: {exc.strerror}"
    report(status_fd, {"exec_error": f"cannot execute {program!r}: {error}"})
    os._exit(127)


def run_init(spec: dict[str, Any], status_fd: int) -> NoReturn:
    """PID 1 of the namespace: start the tool, reap everything until it exits, report, exit."""
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    tool = os.fork()
    if tool == 0:
        exec_tool(spec, status_fd)
    max_rss = 0
    while True:
        pid, status, usage = os.wait4(-1, 0)
        max_rss = max(max_rss, usage.ru_maxrss)
        if pid == tool:
            break
    total = resource.getrusage(resource.RUSAGE_CHILDREN)
    report(
        status_fd,
        {
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "cpu_ms": round((total.ru_utime + total.ru_stime) * 1000, 3),
            "max_rss_kb": max(max_rss, total.ru_maxrss),
        },
    )
    os._exit(0)


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as file:
        spec = json.load(file)
    status_fd = spec["status_fd"]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        if os.getppid() != spec["worker_pid"]:  # the worker died before the line above: nobody to report to
            return SETUP_FAILED
        flags = CLONE_NEWNS | CLONE_NEWPID | (0 if spec["network"] else CLONE_NEWNET)
        check(libc.unshare(flags), "unshare")
        confine_filesystem(spec)
        init = os.fork()
        if init == 0:
            try:
                run_init(spec, status_fd)
            except OSError as exc:
                report(status_fd, {"error": f"cannot start the sandbox's init: {exc}"})
                os._exit(SETUP_FAILED)
    except OSError as exc:
        report(status_fd, {"error": f"cannot set up the sandbox: {exc}"})
        return SETUP_FAILED
    report(status_fd, {"init_pid": init, "ready_at": time.monotonic()})
    _, status = os.waitpid(init, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main())

"""One launcher: a pre-forked child of the zygote holding a sandbox built ahead of time, which runs one tool.

Ahead of any request the launcher (:func:`launch`) starts a session of its own, unshares its mount, PID, network
(no interface up, not even loopback), IPC and UTS namespaces and forks the namespace's init (PID 1). The init
(:func:`run_init`) builds the request-independent part of the minimal root (:mod:`stepflow.sandbox.rootfs`),
mounts the namespace's own ``/proc`` (``hidepid=invisible``) in it, joins the cgroups the zygote made for this
launcher (moving a process between v1 cgroups waits for an RCU grace period, milliseconds: better before the
request than in it) and waits on the zygote's request socket. One request brings the run's spec (a memfd holding
JSON) and its descriptors: stdin, stdout, stderr, the status pipe and, for a Python tool, its channel. Then the
init (:func:`serve`):

1. reports ``{"launcher_pid": N, "init_pid": M, "cgroup": name}`` (the process group to signal, the init as the
   host sees it, the cgroups to account), writes
   the run's limits into its cgroups, returns to the host's network namespace if the run may use the network,
   finishes the root (declared mounts, working directory, ``pivot_root``, read-only);
2. takes on the state the tool inherits: rlimits, no groups, the run's uid and gid as real ids, the working
   directory, ``no_new_privs``, the seccomp filter; its effective ids become :data:`INIT_UID`, an unprivileged
   uid of its own. Nothing privileged is left for it to do: it only waits;
3. starts the tool (PID 2) with ``posix_spawn`` (no copy of the interpreter's memory) resetting the effective
   ids to the real ones, with default signal handling; a tool that needs ``RLIMIT_AS`` (a limit the init cannot
   live under itself) is forked instead. A Python tool runs in the init itself, its ids all the run's and
   nothing privileged left open (:mod:`stepflow.sandbox.pytool`): forking a large interpreter would cost more
   than the tool; it reports its own end, which the worker does not trust beyond the tool's outcome;
4. reaps every process until the tool exits, kills and reaps whatever the tool left behind, reports
   ``{"exit": code | null, "signal": n | null, "cpu_ms": x, "max_rss_kb": k, "alone": true}`` (rusage of all it
   reaped; only the init is left), closes the status pipe and exits. Should the init be killed instead, the
   kernel kills every process of its namespace: either way nothing outlives the tool.

Signals: the worker stops a run by signalling the launcher's process group: launcher, init, the tool and its
children that stayed in the group. Launcher and init ignore ``SIGTERM`` (an init would anyway: a PID 1 ignores the
signals it has no handler for), so only the tool gets it, with its default meaning; ``SIGKILL`` ends them all.

Failures before the tool runs are reported as ``{"error": "..."}``, a program that cannot be executed as
``{"exec_error": "..."}``. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from stepflow.sandbox import cgroups, kernel, rootfs
from stepflow.sandbox.initproc import reap, report

SETUP_FAILED = 125
HOSTNAME = "sandbox"
INIT_UID = 1_499_999
"""The effective uid of every sandbox's init once it has started the tool: unprivileged, below every tool uid."""
_NAMESPACES = kernel.CLONE_NEWNS | kernel.CLONE_NEWPID | kernel.CLONE_NEWNET | kernel.CLONE_NEWIPC | kernel.CLONE_NEWUTS


@dataclass
class Shared:
    """What every launcher of one zygote inherits."""

    sock: socket.socket
    taken_fd: int
    host_net_fd: int
    mount_point: str
    zygote_pid: int
    seccomp: bytes | None = None
    extra_paths: tuple[str, ...] = ()
    inherited: list[int] = field(default_factory=list)


@dataclass
class Sandbox:
    """What one launcher's init holds while it waits: its cgroups, and why it is unusable if it is."""

    cgroup_name: str
    cgroups: list[cgroups.Handle]
    error: str | None = None
    init_pid: int | None = None


@dataclass
class Request:
    """One run: its spec and its descriptors."""

    spec: dict[str, Any]
    stdin: int
    stdout: int
    stderr: int
    status: int
    channel: int | None


def receive(shared: Shared) -> Request | None:
    """Wait for one request (None when the worker closed the socket)."""
    message, fds, _, _ = socket.recv_fds(shared.sock, 64, 64, socket.MSG_CMSG_CLOEXEC)
    if not message:
        return None
    spec_fd, stdin, stdout, stderr, status, *rest = fds
    with os.fdopen(spec_fd, "rb") as file:
        spec = json.loads(file.read())
    return Request(spec, stdin, stdout, stderr, status, rest[0] if rest else None)


def _alive(fd: int) -> bool:
    """False once the other end of this pipe (held by the parent) is closed: the parent died."""
    return not select.select([fd], [], [], 0)[0]


def _confine(shared: Shared, spec: dict[str, Any], alive: int) -> None:
    """The init takes on the state the tool inherits: rlimits (all but RLIMIT_AS), no groups, the run's uid and
    gid as *real* ids, the working directory, ``no_new_privs``, the seccomp filter. Its effective ids become
    :data:`INIT_UID` (unprivileged, never a tool's), which the tool, started with ``resetids``, does not keep: the
    tool cannot trace the init, and a scan for the run's uid never finds it."""
    for name, (soft, hard) in spec["rlimits"].items():
        if name != "RLIMIT_AS":
            resource.setrlimit(getattr(resource, name), (soft, hard))
    os.chdir(rootfs.WORKDIR)  # while still root: the directory is the run uid's alone
    os.setgroups([])
    os.setresgid(spec["gid"], INIT_UID, INIT_UID)
    os.setresuid(spec["uid"], INIT_UID, INIT_UID)
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)  # the change of effective uid cleared it
    if not _alive(alive):
        raise OSError("the launcher died")
    kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
    if shared.seccomp is not None:
        kernel.load_seccomp(shared.seccomp)


def _drop_all(spec: dict[str, Any]) -> None:
    """Every id becomes the run's (in a forked tool's process, or in an init that runs a Python tool)."""
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    kernel.prctl(kernel.PR_SET_DUMPABLE, 1)  # its own /proc/self, like an exec'd program's
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)  # from the parent: the init, or for an init its launcher


class CannotExecute(Exception):
    """The tool's program could not be executed (not found, not executable)."""


_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


def _candidates(spec: dict[str, Any]) -> list[str]:
    """Where ``argv[0]`` may be, in order: itself if it holds a slash, else along PATH; the executable ones first
    (a stat each: trying to spawn a missing program costs a whole clone)."""
    program, path = spec["argv"][0], spec["path"]
    places = [program] if "/" in program else [os.path.join(d or ".", program) for d in path.split(":")]
    return sorted(places, key=lambda place: not os.access(place, os.X_OK))


def _spawn(spec: dict[str, Any]) -> int:
    """Start the program without copying this process (CannotExecute naming why it cannot be)."""
    error = "not found on PATH " + spec["path"]
    for candidate in _candidates(spec):
        try:
            return os.posix_spawn(
                candidate, spec["argv"], spec["env"], setsigdef=_DEFAULT_SIGNALS, setsigmask=(), resetids=True
            )
        except OSError as exc:
            error = f"{candidate}: {exc.strerror}"
    raise CannotExecute(f"cannot execute {spec['argv'][0]!r}: {error}")


def _fork_program(shared: Shared, request: Request, sandbox: Sandbox) -> int:
    """Fork the tool's process for a program that needs RLIMIT_AS (which the init cannot live under)."""
    tool = os.fork()
    if tool:
        return tool
    spec, status = request.spec, request.status
    try:
        resource.setrlimit(resource.RLIMIT_AS, tuple(spec["rlimits"]["RLIMIT_AS"]))
        _drop_all(spec)
        for sig in _DEFAULT_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _close_privileged(shared, sandbox)
    except OSError as exc:
        report(status, {"error": f"cannot apply the sandbox to the tool's process: {exc}"})
        os._exit(SETUP_FAILED)
    error = ""
    for candidate in _candidates(spec):
        with contextlib.suppress(OSError):
            os.execve(candidate, spec["argv"], spec["env"])
        error = candidate
    report(status, {"exec_error": f"cannot execute {spec['argv'][0]!r} (last tried {error})"})
    os._exit(127)


def _close_privileged(shared: Shared, sandbox: Sandbox) -> None:
    """Close what the tool must not hold: the request socket, the zygote's pipe, the host's network namespace,
    the run's cgroup directories (its limits would be writable through them)."""
    for fd in (shared.sock.fileno(), shared.taken_fd, shared.host_net_fd, *shared.inherited):
        with contextlib.suppress(OSError):
            os.close(fd)
    for _, fd in sandbox.cgroups:
        with contextlib.suppress(OSError):
            os.close(fd)


def _enter(shared: Shared, request: Request, sandbox: Sandbox) -> None:
    """Everything the run needs done as root: stdio, limits, network, the tool's module, the finished root."""
    spec = request.spec
    for target, fd in ((0, request.stdin), (1, request.stdout), (2, request.stderr)):
        os.dup2(fd, target)
        os.close(fd)
    cgroups.write_limits(
        sandbox.cgroups, memory_bytes=spec["memory_bytes"], cpu_limit=spec["cpu_limit"], pids=spec["pids"]
    )
    if spec["network"]:
        kernel.setns(shared.host_net_fd, kernel.CLONE_NEWNET)
    if spec.get("python"):
        from stepflow.sandbox import pytool

        if pytool.preload(spec["python"]):  # imported now: the zygote imports it too, for the next launchers
            os.write(shared.taken_fd, f"m {spec['python']['module']}\n".encode())
    rootfs.finish(
        shared.mount_point,
        uid=spec["uid"],
        gid=spec["gid"],
        workdir_bytes=spec["workdir_bytes"],
        mounts=[(source, target) for source, target in spec["mounts"]],
    )


def _become_python_tool(shared: Shared, request: Request, sandbox: Sandbox, alive: int) -> NoReturn:
    """A Python tool runs in the init itself (no fork of a large interpreter): fully the run's uid, nothing
    privileged left open. Its reports are not trusted for anything but its own outcome."""
    spec = request.spec
    _confine(shared, spec, alive)
    if "RLIMIT_AS" in spec["rlimits"]:  # no memory cgroup: the tool's own process holds the address-space limit
        resource.setrlimit(resource.RLIMIT_AS, tuple(spec["rlimits"]["RLIMIT_AS"]))
    _drop_all(spec)
    _close_privileged(shared, sandbox)
    from stepflow.sandbox import pytool

    assert request.channel is not None
    pytool.run(spec["python"], spec["env"], request.channel, request.status)


def serve(shared: Shared, request: Request, sandbox: Sandbox, launcher_pid: int, alive: int) -> int:
    """Run the request's tool; the init's exit status."""
    status, spec = request.status, request.spec
    report(status, {"launcher_pid": launcher_pid, "init_pid": sandbox.init_pid, "cgroup": sandbox.cgroup_name})
    try:
        if sandbox.error is not None:
            raise OSError(sandbox.error)
        _enter(shared, request, sandbox)
        if request.channel is not None:
            _become_python_tool(shared, request, sandbox, alive)
        _confine(shared, spec, alive)
        tool = _fork_program(shared, request, sandbox) if "RLIMIT_AS" in spec["rlimits"] else _spawn(spec)
        report(status, {"spawned_at": time.monotonic()})  # the worker's start latency (one system-wide clock)
    except CannotExecute as exc:
        report(status, {"exec_error": str(exc)})
        return 127
    except (OSError, ImportError) as exc:
        report(status, {"error": f"cannot set up the sandbox: {exc}"})
        return SETUP_FAILED
    for fd in (0, 1, 2):
        os.close(fd)
    wait_status, max_rss = reap(tool)
    total = resource.getrusage(resource.RUSAGE_CHILDREN)
    report(
        status,
        {
            "exit": os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else None,
            "signal": os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None,
            "cpu_ms": round((total.ru_utime + total.ru_stime) * 1000, 3),
            "max_rss_kb": max(max_rss, total.ru_maxrss),
            "seccomp": shared.seccomp is not None,
            "alone": True,
        },
    )
    os.close(status)  # the worker sees the end now, not after this process's teardown
    return 0


def run_init(shared: Shared, sandbox: Sandbox, launcher_pid: int, alive: int) -> NoReturn:
    """PID 1 of the sandbox's namespaces: build the base root, join the cgroups, wait for a request, serve it."""
    code = SETUP_FAILED
    try:
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
        if not _alive(alive):
            os._exit(SETUP_FAILED)
        try:
            sandbox.init_pid = int(os.readlink("/proc/self"))  # the host's view, while its /proc is visible
            rootfs.build_base(shared.mount_point, shared.extra_paths)
            kernel.mount(
                "proc", shared.mount_point + "/proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV, "hidepid=invisible"
            )
            cgroups.join(sandbox.cgroups)
            if shared.extra_paths:  # the python zygote's
                from stepflow.sandbox import pytool

                pytool.prepare()
        except OSError as exc:
            sandbox.error = sandbox.error or f"cannot build the sandbox: {exc}"
        request = receive(shared)
        if request is None:
            os.write(shared.taken_fd, b"e\n")
            os._exit(0)
        os.write(shared.taken_fd, b"t\n")
        code = serve(shared, request, sandbox, launcher_pid, alive)
    finally:
        os._exit(code)


def launch(shared: Shared, sandbox: Sandbox) -> NoReturn:
    """The launcher's whole life, in a freshly forked child of the zygote: namespaces, the init, wait."""
    code = SETUP_FAILED
    try:
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != shared.zygote_pid:
            os._exit(SETUP_FAILED)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.setsid()
        kernel.unshare(_NAMESPACES)
        kernel.sethostname(HOSTNAME)
        alive_r, alive_w = os.pipe()
        launcher_pid = os.getpid()
        init = os.fork()
        if init == 0:
            os.close(alive_w)
            shared.inherited.append(alive_r)
            run_init(shared, sandbox, launcher_pid, alive_r)
        os.close(alive_r)
        shared.sock.close()
        for _, fd in sandbox.cgroups:
            os.close(fd)
        _, status = os.waitpid(init, 0)
        code = os.waitstatus_to_exitcode(status) & 0xFF
    except OSError as exc:
        # No init: take one request anyway, so that the worker learns why instead of waiting for a launcher.
        request = receive(shared)
        os.write(shared.taken_fd, b"t\n" if request is not None else b"e\n")
        if request is not None:
            report(request.status, {"launcher_pid": os.getpid()})
            report(request.status, {"error": f"cannot create the sandbox's namespaces: {exc}"})
    finally:
        os._exit(code)

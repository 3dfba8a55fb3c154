"""Control groups for sandboxed tools: detected once per worker (v1, v2 or none, controller by controller), one
cgroup per run holding its memory, CPU-share and process limits, and the run's accounting read back from it.

Detection reads ``/proc/self/mountinfo`` and ``/proc/self/cgroup``: a controller mounted in a v1 hierarchy is used
there; otherwise a controller listed in the v2 hierarchy's ``cgroup.controllers`` is used there. Each worker keeps
its runs under ``<its own cgroup>/stepflow-<worker pid>`` (nested, so whatever limits the worker itself runs under
still hold), and removes the directories left by workers that died. On v2 the worker's own cgroup must delegate
the controllers to its children; when it holds processes (v2 forbids enabling controllers there) the worker moves
itself into a leaf ``stepflow-worker-<pid>`` first. A controller that cannot be used is reported with the reason,
and the limit it would hold falls back to an rlimit or is refused (see :mod:`stepflow.sandbox.limits`).

Three parties touch a run's cgroups: the zygote creates ``run-<name>`` in every hierarchy for each launcher it
forks (:func:`open_run`), the launcher's init joins them ahead of any request (:func:`join`: a v1 move waits for
an RCU grace period) and writes the run's limits when the request comes (:func:`write_limits`), and the worker
reads what is left in them and their accounting, then removes them (:class:`RunCgroup`).

================  ==================================  ==================================
what              v1 file                             v2 file
================  ==================================  ==================================
memory limit      memory.limit_in_bytes, .memsw.*     memory.max, memory.swap.max = 0
memory peak       memory.max_usage_in_bytes           memory.peak
OOM kills         memory.oom_control ``oom_kill``     memory.events ``oom_kill``
CPU share         cpu.cfs_quota_us / cpu.cfs_period   cpu.max ``quota period``
CPU time          cpuacct.usage (ns)                  cpu.stat ``usage_usec``
processes         pids.max, pids.events ``max``       pids.max, pids.events ``max``
================  ==================================  ==================================
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class Hierarchy:
    """One cgroup hierarchy this worker creates run cgroups in."""

    version: int
    base: Path
    controllers: frozenset[str]


def hierarchies_to_json(hierarchies: Sequence[Hierarchy]) -> str:
    return json.dumps([[h.version, str(h.base), sorted(h.controllers)] for h in hierarchies])


def hierarchies_from_json(text: str) -> tuple[Hierarchy, ...]:
    return tuple(
        Hierarchy(version, Path(base), frozenset(controllers)) for version, base, controllers in json.loads(text)
    )


@dataclass(frozen=True)
class CgroupSupport:
    """Which controllers this worker can use, where, and why the others cannot be used."""

    hierarchies: tuple[Hierarchy, ...] = ()
    missing: dict[str, str] = field(default_factory=dict)

    def hierarchy(self, controller: str) -> Hierarchy | None:
        return next((h for h in self.hierarchies if controller in h.controllers), None)

    def has(self, controller: str) -> bool:
        return self.hierarchy(controller) is not None

    @property
    def label(self) -> str:
        """``v1``, ``v2``, ``v1+v2`` or ``none``: the versions in use."""
        versions = sorted({h.version for h in self.hierarchies})
        return "+".join(f"v{v}" for v in versions) or "none"

    def describe(self) -> str:
        used = ", ".join(f"{c} (v{h.version})" for c in CONTROLLERS if (h := self.hierarchy(c)) and c in CONTROLLERS)
        missing = "; ".join(f"{c}: {why}" for c, why in sorted(self.missing.items()))
        return f"cgroups {self.label}: {used or 'no controller'}" + (f"; not used: {missing}" if missing else "")


@dataclass(frozen=True)
class CgroupStats:
    """What a run used, read from its cgroup after its processes are gone (None: not measured)."""

    memory_peak_bytes: int | None = None
    cpu_ns: int | None = None
    oom_kills: int = 0
    pids_denied: int = 0


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(mount point, mount root, fstype, super options) of every cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        parts, rest = left.split(), right.split()
        if len(parts) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        found.append((parts[4].replace("\\040", " "), parts[3], rest[0], set(rest[2].split(","))))
    return found


def _own_paths(self_cgroup: str) -> dict[str, str]:
    """Controller (or ``""`` for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _join(mount_point: str, mount_root: str, own: str) -> Path:
    relative = os.path.relpath(own, mount_root) if own.startswith(mount_root) else own.lstrip("/")
    return Path(mount_point) / ("" if relative == "." else relative)


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as file:
        file.write(value)


def _read(path: Path) -> str:
    with open(path, encoding="ascii") as file:
        return file.read()


def _keyed(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def sweep(parent: Path) -> None:
    """Remove ``stepflow-<pid>`` directories under ``parent`` whose worker is dead (runs first, then the dir)."""
    for entry in parent.glob("stepflow-[0-9]*"):
        pid = entry.name.rsplit("-", 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        for run in entry.glob("run-*"):
            with contextlib.suppress(OSError):
                run.rmdir()
        with contextlib.suppress(OSError):
            entry.rmdir()


def _prepare_v1(point: str, root: str, options: set[str], own: dict[str, str]) -> tuple[Hierarchy | None, str]:
    controllers = frozenset(options & set(CONTROLLERS))
    path = own.get(sorted(controllers)[0]) if controllers else None
    if not controllers or path is None:
        return None, "not in this process's cgroups"
    own_dir = _join(point, root, path)
    base = own_dir / f"stepflow-{os.getpid()}"
    try:
        sweep(own_dir)
        base.mkdir(exist_ok=True)
    except OSError as exc:
        return None, f"cannot create {base}: {exc.strerror}"
    return Hierarchy(1, base, controllers), ""


def _delegate_v2(own_dir: Path, wanted: list[str]) -> None:
    """Enable ``wanted`` for the children of ``own_dir``, moving this worker into a leaf if v2 requires it."""
    enable = " ".join(f"+{c}" for c in wanted)
    try:
        _write(own_dir / "cgroup.subtree_control", enable)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        leaf = own_dir / f"stepflow-worker-{os.getpid()}"
        leaf.mkdir(exist_ok=True)
        _write(leaf / "cgroup.procs", str(os.getpid()))
        _write(own_dir / "cgroup.subtree_control", enable)


def _prepare_v2(point: str, root: str, own: dict[str, str], taken: set[str]) -> tuple[Hierarchy | None, str]:
    own_dir = _join(point, root, own.get("", "/"))
    try:
        offered = set(_read(own_dir / "cgroup.controllers").split())
    except OSError as exc:
        return None, f"cannot read {own_dir}/cgroup.controllers: {exc.strerror}"
    wanted = sorted((offered & {"memory", "cpu", "pids"}) - taken)
    if not wanted:
        return None, "no controller offered in the v2 hierarchy"
    base = own_dir / f"stepflow-{os.getpid()}"
    try:
        sweep(own_dir)
        _delegate_v2(own_dir, wanted)
        base.mkdir(exist_ok=True)
        _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    except OSError as exc:
        return None, f"cannot delegate {', '.join(wanted)} under {own_dir}: {exc.strerror}"
    controllers = set(wanted) | ({"cpuacct"} if "cpu" in wanted else set())
    return Hierarchy(2, base, frozenset(controllers)), ""


def detect(mountinfo: str | None = None, self_cgroup: str | None = None) -> CgroupSupport:
    """Find the usable controllers (v1 first, then v2) and prepare this worker's parent cgroups."""
    if mountinfo is None:
        mountinfo = _read(Path("/proc/self/mountinfo"))
    if self_cgroup is None:
        self_cgroup = _read(Path("/proc/self/cgroup"))
    if os.geteuid() != 0:
        return CgroupSupport(missing={c: "the worker is not root" for c in CONTROLLERS})
    own = _own_paths(self_cgroup)
    hierarchies: list[Hierarchy] = []
    problems: dict[str, str] = {}
    mounts = _mounts(mountinfo)
    for point, root, fstype, options in mounts:
        if fstype == "cgroup" and options & set(CONTROLLERS):
            hierarchy, why = _prepare_v1(point, root, options, own)
            if hierarchy is not None:
                hierarchies.append(hierarchy)
            else:
                problems.update({c: why for c in options & set(CONTROLLERS)})
    taken = {c for h in hierarchies for c in h.controllers}
    for point, root, fstype, _ in mounts:
        if fstype == "cgroup2" and not {"memory", "cpu", "pids"} <= taken:
            hierarchy, why = _prepare_v2(point, root, own, taken)
            if hierarchy is not None:
                hierarchies.append(hierarchy)
                taken |= hierarchy.controllers
            else:
                problems.setdefault("v2", why)
            break
    missing = {c: problems.get(c) or problems.get("v2") or "not mounted" for c in CONTROLLERS if c not in taken}
    return CgroupSupport(tuple(hierarchies), missing)


Handle = tuple[Hierarchy, int]
"""A run cgroup's directory in one hierarchy, as an open directory descriptor (usable after ``pivot_root``)."""


def open_run(hierarchies: Sequence[Hierarchy], name: str) -> list[Handle]:
    """Create ``run-<name>`` in every hierarchy (the zygote, for one launcher ahead of its request)."""
    handles: list[Handle] = []
    try:
        for hierarchy in hierarchies:
            directory = hierarchy.base / f"run-{name}"
            directory.mkdir()
            handles.append((hierarchy, os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)))
    except OSError:
        for _, fd in handles:
            os.close(fd)
        raise
    return handles


def _put(fd: int, name: str, value: str) -> None:
    file = os.open(name, os.O_WRONLY, dir_fd=fd)
    try:
        os.write(file, value.encode())
    finally:
        os.close(file)


def join(handles: Sequence[Handle]) -> None:
    """Move the calling process into the run's cgroups (its children are then born there)."""
    for _, fd in handles:
        _put(fd, "cgroup.procs", "0")


def write_limits(handles: Sequence[Handle], *, memory_bytes: int, cpu_limit: float | None, pids: int) -> None:
    """Write the run's limits into its cgroups (OSError if one cannot be set)."""
    for hierarchy, fd in handles:
        v1 = hierarchy.version == 1
        if "memory" in hierarchy.controllers:
            _put(fd, "memory.limit_in_bytes" if v1 else "memory.max", str(memory_bytes))
            with contextlib.suppress(FileNotFoundError):  # no swap accounting: nothing to limit
                _put(fd, "memory.memsw.limit_in_bytes" if v1 else "memory.swap.max", str(memory_bytes) if v1 else "0")
            if not v1:
                _put(fd, "memory.oom.group", "1")
        if "cpu" in hierarchy.controllers and cpu_limit is not None:
            quota = max(1000, round(cpu_limit * CFS_PERIOD_US))
            if v1:
                _put(fd, "cpu.cfs_period_us", str(CFS_PERIOD_US))
                _put(fd, "cpu.cfs_quota_us", str(quota))
            else:
                _put(fd, "cpu.max", f"{quota} {CFS_PERIOD_US}")
        if "pids" in hierarchy.controllers:
            _put(fd, "pids.max", str(pids))


class RunCgroup:
    """The worker's view of one run's cgroups: who is left in them, what they counted, their removal."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = list(dirs)
        self._hierarchies: dict[Path, Hierarchy] = {}

    @classmethod
    def named(cls, support: CgroupSupport, name: str) -> RunCgroup:
        run = cls([h.base / f"run-{name}" for h in support.hierarchies])
        run._hierarchies = {h.base / f"run-{name}": h for h in support.hierarchies}
        return run

    def pids(self) -> list[int]:
        """Processes still in the run (read from the first hierarchy)."""
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                return [int(line) for line in _read(directory / "cgroup.procs").split()]
        return []

    def stats(self) -> CgroupStats:
        peak = cpu = None
        oom = denied = 0
        for directory, h in self._hierarchies.items():
            with contextlib.suppress(OSError, ValueError):
                if "memory" in h.controllers:
                    if h.version == 1:
                        peak = int(_read(directory / "memory.max_usage_in_bytes"))
                        oom = _keyed(_read(directory / "memory.oom_control"), "oom_kill")
                    else:
                        oom = _keyed(_read(directory / "memory.events"), "oom_kill")
                        peak = int(_read(directory / "memory.peak"))
            with contextlib.suppress(OSError, ValueError):
                if "cpuacct" in h.controllers:
                    if h.version == 1:
                        cpu = int(_read(directory / "cpuacct.usage"))
                    else:
                        cpu = _keyed(_read(directory / "cpu.stat"), "usage_usec") * 1000
            with contextlib.suppress(OSError, ValueError):
                if "pids" in h.controllers:
                    denied = _keyed(_read(directory / "pids.events"), "max")
        return CgroupStats(peak, cpu, oom, denied)

    def remove(self) -> bool:
        """Remove the run's directories; False while one still holds a process (the caller retries)."""
        left = []
        for directory in self.dirs:
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                left.append(directory)
        self.dirs = left
        return not left


@functools.cache
def support() -> CgroupSupport:
    """This worker's cgroup support, detected on first use; its parent cgroups are removed when it exits."""
    found = detect()
    atexit.register(_remove_bases, found)
    return found


def _remove_bases(found: CgroupSupport) -> None:
    for hierarchy in found.hierarchies:
        for run in hierarchy.base.glob("run-*"):
            with contextlib.suppress(OSError):
                run.rmdir()
        with contextlib.suppress(OSError):
            hierarchy.base.rmdir()

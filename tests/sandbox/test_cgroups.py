"""cgroup detection and the files written and read per run.

This machine has cgroup v1 controllers and an empty v2 hierarchy, so the v1 path runs for real in every sandbox
test. The v2 path is exercised here on a fake hierarchy (plain directories and files standing in for cgroupfs,
which cannot be mounted with controllers here); the v1 parsing also runs on a fake mountinfo for a layout with
co-mounted controllers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stepflow.sandbox import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroup detection is for root workers")


def _mountinfo(*mounts: tuple[str, str, str]) -> str:
    return "\n".join(
        f"{30 + i} 20 0:{40 + i} / {point} rw,relatime - {fstype} cgroup rw,{options}"
        for i, (point, fstype, options) in enumerate(mounts)
    )


def test_v2_controllers_are_delegated_limited_and_accounted(tmp_path: Path):
    own = tmp_path / "service"
    own.mkdir()
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (own / "cgroup.subtree_control").write_text("")
    support = cgroups.detect(_mountinfo((str(tmp_path), "cgroup2", "nsdelegate")), "0::/service\n")
    assert support.label == "v2" and all(support.has(c) for c in ("memory", "cpu", "cpuacct", "pids"))
    base = own / f"stepflow-{os.getpid()}"
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (base / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"

    handles = cgroups.open_run(support.hierarchies, "z1-1")
    run_dir = base / "run-z1-1"
    for name in ("memory.max", "memory.swap.max", "memory.oom.group", "cpu.max", "pids.max", "cgroup.procs"):
        (run_dir / name).write_text("")
    cgroups.write_limits(handles, memory_bytes=64 << 20, cpu_limit=0.25, pids=9)
    written = {name: (run_dir / name).read_text() for name in ("memory.max", "memory.swap.max", "cpu.max", "pids.max")}
    assert written == {"memory.max": str(64 << 20), "memory.swap.max": "0", "cpu.max": "25000 100000", "pids.max": "9"}
    for _, fd in handles:
        os.close(fd)

    (run_dir / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (run_dir / "memory.peak").write_text(str(70 << 20))
    (run_dir / "cpu.stat").write_text("usage_usec 250000\nuser_usec 200000\n")
    (run_dir / "pids.events").write_text("max 3\n")
    (run_dir / "cgroup.procs").write_text("")
    run = cgroups.RunCgroup.named(support, "z1-1")
    assert run.pids() == []
    assert run.stats() == cgroups.CgroupStats(70 << 20, 250_000_000, oom_kills=1, pids_denied=3)


def test_v1_mounts_are_found_per_controller_and_missing_ones_named(tmp_path: Path):
    mounts = _mountinfo(
        (str(tmp_path / "cpu,cpuacct"), "cgroup", "cpu,cpuacct"),
        (str(tmp_path / "memory"), "cgroup", "memory"),
    )
    for name in ("cpu,cpuacct", "memory/worker"):
        (tmp_path / name).mkdir(parents=True)
    support = cgroups.detect(mounts, "3:memory:/worker\n2:cpu,cpuacct:/\n0::/\n")
    assert support.label == "v1"
    assert support.hierarchy("cpu") is support.hierarchy("cpuacct")
    memory = support.hierarchy("memory")
    assert memory is not None and memory.base == tmp_path / "memory" / "worker" / f"stepflow-{os.getpid()}"
    assert not support.has("pids") and support.missing == {"pids": "not mounted"}
    assert "pids: not mounted" in support.describe()


def test_this_machine_is_detected():
    support = cgroups.support()
    assert support.label in ("v1", "v2", "v1+v2", "none")
    for hierarchy in support.hierarchies:
        assert hierarchy.base.is_dir() and hierarchy.base.name == f"stepflow-{os.getpid()}"

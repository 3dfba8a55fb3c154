"""Unprivileged uids for sandboxed processes, one per running execution, and /proc scans by uid.

Each sandboxed tool runs as a uid of its own, taken from a range no account uses: the execution cannot read or
signal another one's processes or files, ``RLIMIT_NPROC`` (where no pids cgroup is available) counts the
processes of *this* execution only, and without cgroups "is anything of this execution still alive?" is a /proc
scan for the uid. The range is ``UID_BASE + (worker pid % 100) * SLOTS`` onwards, so two workers on one machine
rarely share a range. A uid is first taken only when no process runs as it; a uid given back after a run whose
processes are known to be gone is reused first, without a scan.
"""

from __future__ import annotations

import os
import threading

UID_BASE = 1_500_000
SLOTS = 10_000


def pids_of_uid(uid: int) -> list[int]:
    """Every process whose effective uid is ``uid`` (the owner of its /proc directory)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    found.append(int(name))
            except FileNotFoundError:
                continue
    return found


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            stat = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class UidPool:
    """Hands out sandbox uids that no live process uses, and takes them back."""

    def __init__(self, base: int | None = None) -> None:
        self._base = base if base is not None else UID_BASE + (os.getpid() % 100) * SLOTS
        self._in_use: set[int] = set()
        self._clean: list[int] = []
        self._next = 0
        self._lock = threading.Lock()

    @property
    def uids(self) -> range:
        """Every uid this pool may hand out."""
        return range(self._base, self._base + SLOTS)

    def acquire(self) -> int:
        with self._lock:
            if self._clean:
                uid = self._clean.pop()
                self._in_use.add(uid)
                return uid
            for _ in range(SLOTS):
                uid = self._base + self._next
                self._next = (self._next + 1) % SLOTS
                if uid not in self._in_use and not pids_of_uid(uid):
                    self._in_use.add(uid)
                    return uid
        raise RuntimeError(f"no free sandbox uid in {self._base}..{self._base + SLOTS - 1}")

    def release(self, uid: int, *, clean: bool = False) -> None:
        """Give ``uid`` back; ``clean`` when no process of it can be left, so that it is reused without a scan."""
        with self._lock:
            self._in_use.discard(uid)
            if clean:
                self._clean.append(uid)


UID_POOL = UidPool()

"""Unprivileged uids for sandboxed processes, one per running execution, and /proc scans by uid.

Each sandboxed tool runs as a uid of its own, taken from a range no account uses. That makes three limits exact
without cgroups: ``RLIMIT_NPROC`` counts the processes of *this* execution only, the execution cannot read or
signal another one's processes or files, and "is anything of this execution still alive?" is a /proc scan for
the uid. The range is ``UID_BASE + (worker pid % 100) * SLOTS`` onwards, so two workers on one machine rarely
share a range; a uid is taken only when no process runs as it.
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
        self._next = 0
        self._lock = threading.Lock()

    @property
    def uids(self) -> range:
        """Every uid this pool may hand out."""
        return range(self._base, self._base + SLOTS)

    def acquire(self) -> int:
        with self._lock:
            for _ in range(SLOTS):
                uid = self._base + self._next
                self._next = (self._next + 1) % SLOTS
                if uid not in self._in_use and not pids_of_uid(uid):
                    self._in_use.add(uid)
                    return uid
        raise RuntimeError(f"no free sandbox uid in {self._base}..{self._base + SLOTS - 1}")

    def release(self, uid: int) -> None:
        with self._lock:
            self._in_use.discard(uid)


UID_POOL = UidPool()

"""The tool's minimal root: a fresh tmpfs holding read-only binds of what programs need and nothing else.

Built in two steps inside a launcher's private mount namespace:

- :func:`build_base` (ahead of any request, in the pre-forked launcher): a small tmpfs on the mount point with
  ``/usr`` and the top-level ``/bin``, ``/sbin``, ``/lib*`` (symlinks where the host has merged ``/usr``), the
  ``/etc`` entries for the dynamic linker, name resolution, certificates, time zone and ``alternatives``
  (:data:`ETC_ENTRIES`), device nodes ``null zero full random urandom``, ``/dev/fd`` and the extra read-only paths
  the zygote asks for (a Python tool's import paths);
- :func:`finish` (per run): the tool's declared mounts, its working directory (a tmpfs capped at ``workdir_bytes``,
  owned by its uid, also reached as ``/tmp``, ``/var/tmp`` and ``/dev/shm``), an ``/etc/passwd`` naming it, then
  ``pivot_root`` into the tmpfs, the old root detached, and every mount made read-only and nosuid except the working
  directory. ``/proc`` is mounted later, by the tool's first process inside its own PID namespace.

Never there: ``/home``, ``/root``, ``/var`` (but an empty ``/var/tmp``), ``/srv``, ``/opt``, ``/mnt``, ``/run``,
``/sys``, the worker's directories, the host's ``/proc``. Standard library only (imported by the zygote).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from stepflow.sandbox import kernel

WORKDIR = "/workdir"
ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "gai.conf",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "networks",
    "nsswitch.conf",
    "pki/ca-trust",
    "pki/tls/certs",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
)
TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9))
NEVER = ("/", "/home", "/root", "/var", "/srv", "/proc", "/sys", "/run", "/etc", "/dev", "/boot")
_BASE_TMPFS = "size=1m,nr_inodes=8192,mode=0755"


def _bind(source: str, target: str) -> None:
    kernel.mount(source, target, None, kernel.MS_BIND | kernel.MS_REC)


def _make_target(root: str, path: str, *, directory: bool) -> str:
    """Create ``root + path`` (parents as empty root-owned directories) as a directory or an empty file.

    Never through a symlink of the new root (``/tmp`` is one, to the working directory): it would resolve
    against the host's file system.
    """
    prefix = root
    for part in path.strip("/").split("/"):
        prefix = f"{prefix}/{part}"
        if os.path.islink(prefix):
            raise OSError(f"{path} lies under {prefix[len(root) :]}, a link in the sandbox's root")
    target = root + path
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if directory:
        os.makedirs(target, mode=0o755, exist_ok=True)
    elif not os.path.exists(target):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    return target


def _bind_host(root: str, path: str) -> None:
    """Bind the host's ``path`` at the same place, or copy it as a symlink when it points into ``/usr``."""
    if os.path.islink(path):
        resolved = os.path.realpath(path)
        if resolved.startswith("/usr/"):
            _make_target(root, os.path.dirname(path), directory=True)
            os.symlink(os.readlink(path), root + path)
            return
        path_to_bind = resolved
    else:
        path_to_bind = path
    if not os.path.exists(path_to_bind):
        return
    _bind(path_to_bind, _make_target(root, path, directory=os.path.isdir(path_to_bind)))


def build_base(root: str, extra: Iterable[str] = ()) -> None:
    """The request-independent part of the root, on the (existing, empty) directory ``root``."""
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    kernel.mount("tmpfs", root, "tmpfs", kernel.MS_NOSUID, _BASE_TMPFS)
    for name in TOP_LEVEL:
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), f"{root}/{name}")
        elif os.path.isdir(host):
            _bind(host, _make_target(root, host, directory=True))
    _bind("/usr", _make_target(root, "/usr", directory=True))
    for entry in ETC_ENTRIES:
        _bind_host(root, "/etc/" + entry)
    os.makedirs(f"{root}/dev", mode=0o755)
    for name, major, minor in DEVICES:
        os.mknod(f"{root}/dev/{name}", 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(f"{root}/dev/{name}", 0o666)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "fd/0"), ("stdout", "fd/1"), ("stderr", "fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    for directory in ("/proc", WORKDIR, "/var"):
        os.makedirs(root + directory, mode=0o755)
    for link in ("/tmp", "/var/tmp", "/dev/shm"):
        os.symlink(WORKDIR, root + link)
    for path in extra:
        if os.path.isdir(path) and not os.path.lexists(root + path):
            try:
                target = _make_target(root, path, directory=True)
            except OSError:
                continue  # a path the sandbox's layout shadows (under /tmp): imported before the root is entered
            _bind(path, target)


def _identity(root: str, uid: int, gid: int) -> None:
    with open(f"{root}/etc/passwd", "w", encoding="utf-8") as file:
        file.write(
            f"root:x:0:0:root:/:/usr/sbin/nologin\ntool:x:{uid}:{gid}:stepflow tool:{WORKDIR}:/usr/sbin/nologin\n"
        )
    with open(f"{root}/etc/group", "w", encoding="utf-8") as file:
        file.write(f"root:x:0:\ntool:x:{gid}:\n")


def finish(root: str, *, uid: int, gid: int, workdir_bytes: int, mounts: Sequence[tuple[str, str]]) -> None:
    """The run's part of the root, then enter it: the process's root and cwd become the tmpfs, all read-only
    (and nosuid) but the working directory."""
    for source, target in mounts:
        _bind(source, _make_target(root, target, directory=os.path.isdir(source)))
    _identity(root, uid, gid)
    kernel.mount(
        "tmpfs",
        root + WORKDIR,
        "tmpfs",
        kernel.MS_NOSUID | kernel.MS_NODEV,
        f"size={workdir_bytes},mode=0700,uid={uid},gid={gid}",
    )
    os.chdir(root)
    kernel.pivot_root(".", ".")
    kernel.umount(".", kernel.MNT_DETACH)
    os.chdir("/")
    kernel.mount_setattr("/", kernel.MOUNT_ATTR_RDONLY | kernel.MOUNT_ATTR_NOSUID, 0, recursive=True)
    kernel.mount_setattr(WORKDIR, 0, kernel.MOUNT_ATTR_RDONLY, recursive=False)


def check_mount(source: str, target: str, private: Iterable[str] = ()) -> str | None:
    """Why a declared mount is refused (None when it is fine).

    Both sides must be normalised absolute paths; neither may be, or hold, one of :data:`NEVER` (a directory
    below one, such as ``/srv/models``, is the tool author's explicit choice and allowed), nor lie in ``/proc``,
    ``/sys`` or ``/dev``; the source may not be, hold or lie in one of the ``private`` directories (the worker's
    own); the target may not replace a part of the sandbox's layout.
    """
    for path, side in ((source, "source"), (target, "target")):
        if not os.path.isabs(path) or os.path.normpath(path) != path:
            return f"mount {side} {path!r} must be a normalised absolute path"
        for forbidden in NEVER:
            if path == forbidden or (forbidden != "/" and forbidden.startswith(path + "/")):
                return f"mount {side} {path!r} would expose {forbidden}, which a tool never sees"
        if any(path.startswith(prefix) for prefix in ("/proc/", "/sys/", "/dev/")):
            return f"mount {side} {path!r} lies in a kernel file system the sandbox provides itself"
    for directory in private:
        if source == directory or source.startswith(directory + "/") or directory.startswith(source + "/"):
            return f"mount source {source!r} would expose the worker's directory {directory}"
    layout = ("/usr", WORKDIR, "/tmp", "/var/tmp", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
    if any(target == part or target.startswith(part + "/") for part in layout):
        return f"mount target {target!r} is part of the sandbox's own layout; choose another path"
    if not os.path.exists(source):
        return f"mount source {source!r} does not exist on this worker"
    return None

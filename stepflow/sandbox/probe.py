"""Whether this machine can enforce the sandbox's limits at all, probed once per worker process.

Enforcement needs root (to create namespaces, mount and switch to an unprivileged uid) and a Linux kernel with
``mount_setattr`` (5.12+). :func:`sandbox_unavailable` runs ``true`` in a full sandbox; when that fails every
command tool is refused with ResourceLimitExceeded and the probe's reason, rather than run without its limits.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stepflow.sandbox.limits import DEFAULT_LIMITS
from stepflow.sandbox.runner import launcher_argv, write_spec
from stepflow.sandbox.uids import UID_POOL


@functools.cache
def sandbox_unavailable() -> str | None:
    """None when this machine can enforce every sandbox limit, else the reason it cannot (probed once)."""
    if not sys.platform.startswith("linux"):
        return f"command tools need Linux namespaces; this is {sys.platform}"
    if os.geteuid() != 0:
        return (
            "command tools need a worker running as root (to create namespaces, confine the file system and run "
            "the tool as an unprivileged uid); this worker runs as uid "
            f"{os.geteuid()}"
        )
    uid = UID_POOL.acquire()
    read_fd, write_fd = os.pipe()
    try:
        with tempfile.TemporaryDirectory(prefix="stepflow-probe-") as root:
            spec_path = write_spec(
                Path(root), ["true"], {"PATH": "/usr/bin:/bin"}, uid, DEFAULT_LIMITS, status_fd=write_fd
            )
            completed = subprocess.run(
                launcher_argv(spec_path),
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
            os.close(write_fd)
            write_fd = -1
            status = os.read(read_fd, 65536).decode(errors="replace")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the sandbox probe could not run: {exc}"
    finally:
        UID_POOL.release(uid)
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if completed.returncode != 0 or '"exit": 0' not in status:
        detail = (status + completed.stderr.decode(errors="replace")).strip()[-500:]
        return f"this machine cannot create the sandbox (namespaces, read-only mounts, setuid): {detail}"
    return None

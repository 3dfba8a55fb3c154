"""The escape corpus, second part: what a tool tries against the minimal root, the cgroups and seccomp.

Each case runs a real program in the real sandbox and checks what the kernel let through.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from stepflow.errors import ResourceLimitExceeded
from stepflow.sandbox import cgroups
from stepflow.sandbox.probe import sandbox_features
from tests.sandbox.helpers import limits, requires_sandbox, run_py

pytestmark = requires_sandbox


@pytest.fixture
def secrets():
    """A world-readable file in /home and one in /root, as careless accounts leave them."""
    home = Path("/home") / f"stepflow-test-{os.getpid()}"
    home.mkdir(mode=0o755)
    files = [home / "notes.txt", Path("/root") / f"stepflow-test-{os.getpid()}.txt"]
    for path in files:
        path.write_text("secret")
        path.chmod(0o644)
    try:
        yield files
    finally:
        shutil.rmtree(home)
        files[1].unlink()


async def test_home_root_and_other_host_directories_are_not_there(secrets):
    code = f"""
import json, os
seen = {{}}
for path in {[str(p) for p in secrets]!r} + ["/home", "/srv", "/var/lib", "/var/log", "/etc/shadow", "/opt", "/run"]:
    try:
        seen[path] = os.listdir(path) if os.path.isdir(path) else open(path).read()
    except OSError as exc:
        seen[path] = exc.strerror
print(json.dumps({{"seen": seen, "root": sorted(os.listdir("/")), "passwd": open("/etc/passwd").read()}}))
"""
    result, error = await run_py(code)
    assert error is None, error
    report = json.loads(result.stdout)
    assert set(report["seen"].values()) == {"No such file or directory"}, report["seen"]
    assert "home" not in report["root"] and "srv" not in report["root"] and "opt" not in report["root"]
    assert report["passwd"].splitlines()[1].startswith("tool:x:"), report["passwd"]


async def test_proc_is_the_tools_own_namespace():
    code = "import os, json; print(json.dumps(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())))"
    result, error = await run_py(code)
    assert error is None, error
    # the tool is PID 2 under its init (hidden: another uid); nothing of the host, not the worker
    assert json.loads(result.stdout) == [2], result.stdout


async def test_a_memory_bomb_touching_pages_slowly_is_stopped_by_resident_memory():
    code = "import time\nkept = []\nwhile True:\n    kept.append(bytearray(b'x' * 4 * 2**20))\n    time.sleep(0.002)"
    started = time.monotonic()
    result, error = await run_py(code, limits(memory_mb=64))
    assert isinstance(error, ResourceLimitExceeded) and error.message.startswith("memory_mb"), error
    assert result.oom_kills >= 1 and time.monotonic() - started < 10


async def test_a_go_style_address_space_reservation_succeeds_under_a_small_memory_limit():
    code = """
import ctypes, mmap
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
MAP_NORESERVE = 0x4000  # PROT_NONE (0), as Go reserves its heap
address = libc.mmap(None, 8 << 30, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
print("reserved" if address not in (None, ctypes.c_void_p(-1).value) else "failed %d" % ctypes.get_errno())
"""
    result, error = await run_py(code, limits(memory_mb=128))
    assert error is None and result.stdout == b"reserved\n", (result, error)


@pytest.mark.skipif(not cgroups.support().has("cpu"), reason="no cgroup cpu controller on this machine")
async def test_a_spinner_under_a_quarter_core_gets_about_a_quarter_core():
    code = "import time\nend = time.monotonic() + 2\nwhile time.monotonic() < end: pass\nprint(time.process_time())"
    result, error = await run_py(code, limits(cpu_limit=0.25))
    assert error is None, error
    share = float(result.stdout) / 2
    assert 0.1 < share < 0.32, f"{share:.2f} of a core"  # below when the shared machine is busy, never above


@pytest.mark.skipif(not sandbox_features()["seccomp"], reason="libseccomp is not installed (make test installs it)")
async def test_ptrace_mount_namespaces_and_bpf_are_denied():
    code = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(call, *args):
    result = call(*args)
    return "allowed" if result != -1 else errno.errorcode[ctypes.get_errno()]
child = os.fork()
if child == 0:
    os.pause()
print(json.dumps({
    "ptrace": attempt(libc.ptrace, 16, child, None, None),  # PTRACE_ATTACH to its own child
    "mount": attempt(libc.mount, b"none", b"/workdir", b"tmpfs", 0, None),
    "unshare_user": attempt(libc.unshare, 0x10000000),  # CLONE_NEWUSER: the way to a root of its own
    "bpf": attempt(libc.syscall, 321, 0, None, 0),
    "keyctl": attempt(libc.syscall, 250, 0, 0, 0, 0, 0),
}))
os.kill(child, 9)
"""
    result, error = await run_py(code)
    assert error is None, error
    assert set(json.loads(result.stdout).values()) == {"EPERM"}, result.stdout
    assert result.status["seccomp"] is True

"""The sandbox's seccomp filter: system calls a tool has no business making fail with ``EPERM``.

Built once per zygote with libseccomp through ``pyseccomp`` (its ctypes binding, API-compatible with libseccomp's
own Python bindings) and exported as a BPF program, which each sandbox's init loads on itself
(:func:`stepflow.sandbox.kernel.load_seccomp`, after ``no_new_privs``) right before it starts the tool; every
process of the tool inherits it. (libseccomp would regenerate the program on every load: 0.4 ms a run.)

Everything not listed is allowed: the filter is a second wall behind the unprivileged uid and the namespaces,
closing the kernel interfaces that stay reachable without privileges (user namespaces, ptrace of the tool's own
processes, keyrings, bpf, perf, userfaultfd) or that would matter should a privilege escalation ever succeed
(mounts, modules, kexec, reboot).

Non-native system call ABIs (i386, x32) kill the process (libseccomp's default for a foreign architecture).
When libseccomp cannot be loaded the sandbox runs without this layer and :func:`unavailable` says why.
"""

from __future__ import annotations

import errno
import os

DENIED = (
    # namespaces and mounts
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    # looking into or controlling other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    # kernel interfaces
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "open_by_handle_at",
    "name_to_handle_at",
    "iopl",
    "ioperm",
)
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)

_why_unavailable: str | None = None


def build() -> bytes | None:
    """The filter as a BPF program (``struct sock_filter`` array), or None when libseccomp is not available."""
    global _why_unavailable
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as exc:
        _why_unavailable = f"libseccomp is not available ({exc}); install the libseccomp2 package"
        return None
    deny = pyseccomp.ERRNO(errno.EPERM)
    try:
        syscall_filter = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in DENIED:
            syscall_filter.add_rule(deny, name)
        for flag in NAMESPACE_FLAGS:  # clone() creating a namespace; clone3's flags sit behind a pointer:
            syscall_filter.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
        syscall_filter.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")  # C libraries then fall back to clone()
        with open(os.memfd_create("stepflow-seccomp", os.MFD_CLOEXEC), "w+b") as program:
            syscall_filter.export_bpf(program)
            program.seek(0)
            return program.read()
    except (OSError, RuntimeError, ValueError) as exc:
        _why_unavailable = f"the seccomp filter cannot be built: {exc}"
        return None


def unavailable() -> str | None:
    """Why :func:`build` returned None (None if it was not called or succeeded)."""
    return _why_unavailable

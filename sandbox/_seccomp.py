"""The seccomp filter of a jailed worker, compiled to BPF with libseccomp (via PyPI `pyseccomp`).

A deny-list on top of the namespaces: everything a Python controller never needs and an escape would
(new processes, sockets, tracing other processes, mounts and namespaces, kernel keyrings, BPF, perf,
userfaultfd, io_uring, kernel modules, personality, ...). Denied calls fail with EPERM. Threads stay
allowed: `clone` is refused only without CLONE_THREAD, and `clone3` (whose flags seccomp cannot see)
fails with ENOSYS so the C library falls back to `clone`. Syscalls of other ABIs (32-bit x86, x32)
kill the process (libseccomp's default for a foreign architecture). bwrap installs the filter
(``--seccomp FD``) right before it executes the worker, with no_new_privs set.
"""

from __future__ import annotations

import errno
import functools
import tempfile

__all__ = ["DENIED", "filter_bpf"]

CLONE_THREAD = 0x00010000

DENIED = (
    # new processes (threads stay allowed, see `clone` below)
    "fork", "vfork",
    # every socket, so no network, unix-socket or netlink access even through an inherited namespace
    "socket", "socketpair",
    # other processes' memory and descriptors
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "process_madvise",
    # mounts, root changes and namespaces
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen", "fsconfig", "fsmount",
    "fspick", "open_tree", "move_mount", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
    # kernel keyrings, BPF, perf, userfaultfd, io_uring, fanotify
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init",
    # kernel and machine administration
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "personality",
    "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "iopl", "ioperm", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "uselib", "lookup_dcookie",
    "mbind", "migrate_pages", "move_pages", "set_mempolicy",
)


@functools.cache
def filter_bpf() -> bytes:
    """The compiled filter (raw BPF for ``bwrap --seccomp``); ImportError/RuntimeError/OSError when
    libseccomp or its binding is missing."""
    import pyseccomp as seccomp

    flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            flt.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (OSError, ValueError, RuntimeError):  # not a syscall of this architecture
            continue
    flt.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()

"""The README's table of system calls, made from the registry so that it cannot drift.

`python -m vsnap.kernel.table` prints the Markdown that README.md holds between the
`<!-- syscall-table -->` markers; tests/test_syscall_table.py fails when the two differ, and
when a note below names a call that is not registered. The notes are the one hand-written part:
where a registered call refuses some uses, or does what Linux does differently, in one line.
"""
from __future__ import annotations

import sys

from ..abi import syscalls
from .registry import SYSCALLS

# name -> (status, note). status: "refuses" (the call exists but always fails, with the errno
# Linux would give a program it does not suit) or "differs" (works, with the difference noted).
NOTES: dict[str, tuple[str, str]] = {
    "rseq": ("refuses", "ENOSYS: one thread and no preemption, nothing to restart; glibc "
                        "carries on"),
    "mmap": ("differs", "MAP_SHARED of a writable file maps the host file's pages; its mtime "
                        "moves at msync, not at a store"),
    "mremap": ("differs", "MREMAP_FIXED: EINVAL"),
    "madvise": ("differs", "MADV_DONTNEED drops private pages (zeros, or the file's bytes "
                           "again); other advice has no effect"),
    "getrandom": ("differs", "a seeded stream (--seed): the same bytes in every run"),
    "uname": ("differs", "fixed: Linux 6.1.0-vsnap, host name vsnap"),
    "sched_getaffinity": ("differs", "one CPU"),
    "sched_yield": ("differs", "ends the process's turn when another could run"),
    "clock_gettime": ("differs", "virtual clocks"),
    "gettimeofday": ("differs", "the virtual clock"),
    "time": ("differs", "the virtual clock"),
    "nanosleep": ("differs", "the virtual clock: alone, a process skips the time at once; "
                             "with others, it waits while they run"),
    "clock_nanosleep": ("differs", "the virtual clock, as nanosleep"),
    "kill": ("differs", "guest processes only: vsnap (999) and the guest's init (1) EPERM"),
    "clone": ("differs", "processes only: CLONE_THREAD, shared tables and namespaces EINVAL; "
                         "CLONE_VM needs CLONE_VFORK (then the child runs in the parent's "
                         "memory, as vfork)"),
    "clone3": ("refuses", "ENOSYS: libc falls back to clone"),
    "vsnap_checkpoint": ("differs", "vsnap's own (DragonFly's sys_checkpoint, "
                                    "<vsnap/checkpoint.h>); ENOSYS on Linux"),
    "chroot": ("refuses", "EPERM (no CAP_SYS_CHROOT), after the path's own errors"),
    "vfork": ("differs", "as Linux: the child runs in the parent's memory (on its engine) "
                         "while the parent waits for its exec or exit"),
    "execve": ("differs", "static x86-64 ELF inside the root, or #! scripts; others ENOEXEC"),
    "execveat": ("differs", "as execve"),
    "ioctl": ("differs", "terminal requests only; others ENOTTY"),
    "utimensat": ("differs", "vsnap's virtual files (/dev, /proc, the console): EPERM"),
    "statfs": ("differs", "fixed numbers: a 16 GiB ext4, half free, noatime"),
    "fstatfs": ("differs", "fixed numbers: a 16 GiB ext4, half free, noatime"),
    "lseek": ("differs", "SEEK_DATA/SEEK_HOLE on a directory: EINVAL"),
    "sync": ("differs", "flushes the host file system that holds the sandbox"),
    "futex": ("differs", "one thread: WAKE wakes nobody; a WAIT nothing can end is a deadlock "
                         "named in one line; PI operations ENOSYS"),
    "flock": ("differs", "vsnap's own locks: host processes do not see them, nor they theirs"),
    "fcntl": ("differs", "file locks and leases are vsnap's own; memfd seals: EINVAL"),
    "poll": ("differs", "a captured console is always readable, end of input included"),
    "epoll_ctl": ("differs", "EPOLLWAKEUP dropped (no CAP_BLOCK_SUSPEND); EPOLLEXCLUSIVE wakes "
                             "every epoll watching; EPOLLET on the terminal or a FIFO reports at "
                             "each wait while ready"),
    "memfd_create": ("differs", "sealing (F_ADD_SEALS) and MFD_HUGETLB: EINVAL"),
    "mknodat": ("differs", "device files: EPERM; a FIFO open that would wait forever: "
                           "EDEADLK and a notice"),
    "mknod": ("differs", "device files: EPERM; a FIFO open that would wait forever: "
                         "EDEADLK and a notice"),
    "pipe": ("differs", "a wait no guest process could end (a deadlock) ends the run with "
                        "one line, status 1; no pipe-user-pages limits"),
    "pipe2": ("differs", "O_NOTIFICATION_PIPE: ENOPKG (no watch queues); a deadlock ends "
                         "the run with one line, status 1"),
    "socket": ("differs", "AF_UNIX, AF_INET, AF_INET6 (others EAFNOSUPPORT); kernel "
                          "objects, never host sockets but for --listen/--connect"),
    "socketpair": ("differs", "AF_UNIX only, as socket"),
    "sendto": ("differs", "MSG_OOB: EOPNOTSUPP and a notice"),
    "sendmsg": ("differs", "MSG_OOB: EOPNOTSUPP and a notice; SCM_RIGHTS and "
                           "SCM_CREDENTIALS only"),
    "recvfrom": ("differs", "MSG_OOB: EOPNOTSUPP and a notice"),
    "recvmsg": ("differs", "MSG_OOB: EOPNOTSUPP and a notice; no SCM_SECURITY"),
    "setsockopt": ("differs", "SOL_SOCKET's common options; timeouts on the virtual clock"),
    "setrlimit": ("differs", "RSS, MEMLOCK, LOCKS, MSGQUEUE, NICE, RTPRIO, RTTIME are kept "
                             "and reported, not enforced (NPROC is: fork EAGAIN)"),
    "prlimit64": ("differs", "the process itself only (other pids ESRCH); see setrlimit"),
    "setitimer": ("differs", "the virtual clocks: ITIMER_VIRTUAL counts 1 ns an "
                             "instruction, ITIMER_PROF also 1 us a system call"),
    "prctl": ("differs", "the options Linux has that vsnap does not keep: EINVAL and a notice"),
    "capget": ("differs", "an unprivileged process: every set empty"),
    "chown": ("differs", "an unprivileged owner: EPERM unless nothing changes"),
    "setuid": ("differs", "an unprivileged user: only the guest's own ids (1000)"),
    "sethostname": ("refuses", "EPERM: an unprivileged user"),
    "setdomainname": ("refuses", "EPERM: an unprivileged user"),
    "setgroups": ("refuses", "EPERM: an unprivileged user"),
}


def _group(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def markdown() -> str:
    """The table of implemented calls and the list of the calls that return ENOSYS."""
    lines = ["| call | nr | module | note |", "|---|---|---|---|"]
    for e in sorted(SYSCALLS.values(), key=lambda e: e.number):
        status, note = NOTES.get(e.name, ("", ""))
        text = f"**{status}**: {note}" if status else ""
        lines.append(f"| `{e.name}` | {e.number} | {_group(e.handler.__module__)} | {text} |")
    missing = sorted((n for n, nr in syscalls.NUMBERS.items() if nr not in SYSCALLS),
                     key=syscalls.NUMBERS.get)
    lines += ["", f"{len(SYSCALLS)} system calls are implemented. The other {len(missing)} "
              "return ENOSYS, and vsnap names each once (see `--log`, `--quiet`): "
              + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def unregistered_notes() -> list[str]:
    """Notes about calls that are not in the registry (a stale note)."""
    names = {e.name for e in SYSCALLS.values()}
    return sorted(n for n in NOTES if n not in names)


if __name__ == "__main__":
    from . import files  # noqa: F401  (importing the package registers every handler)
    sys.stdout.write(markdown())

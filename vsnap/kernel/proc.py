"""Process system calls: exit, identity (getpid and friends; uids and gids are in creds.py),
arch_prctl, the thread-library calls a libc makes at startup (set_tid_address, set_robust_list,
rseq). Resource limits are in limits.py."""
from __future__ import annotations

import struct

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from .core import GuestExit
from .fsutil import s32
from .registry import syscall


@syscall("exit", "int")
def sys_exit(k, status):
    """void _exit(int status);  (one thread: the same as exit_group)"""
    return sys_exit_group(k, status)


@syscall("exit_group", "int")
def sys_exit_group(k, status):
    """void exit_group(int status);"""
    k.proc.exit_status = status & 0xFF
    raise GuestExit(status & 0xFF)


@syscall("getpid", "")
def sys_getpid(k):
    """pid_t getpid(void);"""
    return k.proc.pid


@syscall("gettid", "")
def sys_gettid(k):
    """pid_t gettid(void);"""
    return k.proc.pid


@syscall("getppid", "")
def sys_getppid(k):
    """pid_t getppid(void);"""
    return k.proc.ppid


@syscall("getpgid", "int")
def sys_getpgid(k, pid):
    """pid_t getpgid(pid_t pid);"""
    if s32(pid) not in (0, k.proc.pid):
        raise SyscallError(E.ESRCH, f"no process {s32(pid)}")
    return k.proc.pgid


@syscall("getpgrp", "")
def sys_getpgrp(k):
    """pid_t getpgrp(void);"""
    return k.proc.pgid


@syscall("getsid", "int")
def sys_getsid(k, pid):
    """pid_t getsid(pid_t pid);"""
    if s32(pid) not in (0, k.proc.pid):
        raise SyscallError(E.ESRCH, f"no process {s32(pid)}")
    return k.proc.sid


@syscall("setpgid", "int int")
def sys_setpgid(k, pid, pgid):
    """int setpgid(pid_t pid, pid_t pgid);"""
    pid, pgid = s32(pid), s32(pgid)
    if pid not in (0, k.proc.pid):
        raise SyscallError(E.ESRCH, f"no process {pid}")
    if pgid < 0:
        raise SyscallError(E.EINVAL, "negative pgid")
    if k.proc.sid == k.proc.pid:
        raise SyscallError(E.EPERM, "a session leader cannot change its group")
    k.proc.pgid = pgid or k.proc.pid
    return 0


@syscall("setsid", "")
def sys_setsid(k):
    """pid_t setsid(void);"""
    if k.proc.pgid == k.proc.pid:
        raise SyscallError(E.EPERM, "already a process group leader")
    k.proc.sid = k.proc.pgid = k.proc.pid
    return k.proc.sid


@syscall("arch_prctl", "archprctl ptr")
def sys_arch_prctl(k, code, addr):
    """int arch_prctl(int code, unsigned long addr);"""
    if code == C.ARCH_SET_FS:
        k.cpu.write("fs_base", addr)
    elif code == C.ARCH_SET_GS:
        k.cpu.write("gs_base", addr)
    elif code == C.ARCH_GET_FS:
        k.write(addr, struct.pack("<Q", k.cpu.read("fs_base")))
    elif code == C.ARCH_GET_GS:
        k.write(addr, struct.pack("<Q", k.cpu.read("gs_base")))
    else:
        raise SyscallError(E.EINVAL, f"arch_prctl code {code:#x}")
    return 0


@syscall("set_tid_address", "ptr")
def sys_set_tid_address(k, tidptr):
    """pid_t set_tid_address(int *tidptr);"""
    k.proc.tid_address = tidptr
    return k.proc.pid


@syscall("set_robust_list", "ptr size")
def sys_set_robust_list(k, head, length):
    """long set_robust_list(struct robust_list_head *head, size_t len);"""
    if length != 24:
        raise SyscallError(E.EINVAL, "robust list head size")
    k.proc.robust_list = head
    return 0


@syscall("rseq", "ptr size hex hex")
def sys_rseq(k, rseq, length, flags, sig):
    """int rseq(struct rseq *rseq, uint32_t rseq_len, int flags, uint32_t sig);"""
    # vsnap has one thread and no preemption, so restartable sequences have nothing to
    # restart; refusing is allowed by the ABI and glibc carries on without them.
    raise SyscallError(E.ENOSYS, "rseq is not supported")


@syscall("sched_getaffinity", "int size ptr")
def sys_sched_getaffinity(k, pid, size, mask):
    """int sched_getaffinity(pid_t pid, size_t cpusetsize, cpu_set_t *mask);"""
    if size < 8:
        raise SyscallError(E.EINVAL, "cpuset too small")
    k.write(mask, struct.pack("<Q", 1))  # one CPU
    return 8


@syscall("sched_yield", "")
def sys_sched_yield(k):
    """int sched_yield(void);"""
    return 0

"""Process system calls: exit, identity (getpid and friends; uids and gids are in creds.py),
arch_prctl, the thread-library calls a libc makes at startup (set_tid_address, set_robust_list,
rseq). Resource limits are in limits.py."""
from __future__ import annotations

import struct

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..errors import GuestExit
from .fsutil import s32
from .registry import syscall


def sync_ids(system) -> None:
    """Each process's task shows what the process table says (ppid, pgid, sid)."""
    for pid, q in system.processes.items():
        entry = system.table.get(pid)
        q.task.ppid, q.task.pgid, q.task.sid = entry.ppid, entry.pgid, entry.sid


@syscall("exit", "int")
def sys_exit(p, status):
    """void _exit(int status);  (one thread: the same as exit_group)"""
    return sys_exit_group(p, status)


@syscall("exit_group", "int")
def sys_exit_group(p, status):
    """void exit_group(int status);"""
    p.task.exit_status = status & 0xFF
    raise GuestExit(status & 0xFF)


@syscall("getpid", "")
def sys_getpid(p):
    """pid_t getpid(void);"""
    return p.task.pid


@syscall("gettid", "")
def sys_gettid(p):
    """pid_t gettid(void);"""
    return p.task.pid


@syscall("getppid", "")
def sys_getppid(p):
    """pid_t getppid(void);"""
    return p.task.ppid


@syscall("getpgid", "int")
def sys_getpgid(p, pid):
    """pid_t getpgid(pid_t pid);"""
    return p.sys.table.getpgid(p.task.pid, s32(pid))


@syscall("getpgrp", "")
def sys_getpgrp(p):
    """pid_t getpgrp(void);"""
    return p.task.pgid


@syscall("getsid", "int")
def sys_getsid(p, pid):
    """pid_t getsid(pid_t pid);"""
    return p.sys.table.getsid(p.task.pid, s32(pid))


@syscall("setpgid", "int int")
def sys_setpgid(p, pid, pgid):
    """int setpgid(pid_t pid, pid_t pgid);"""
    table = p.sys.table
    table.setpgid(p.task.pid, s32(pid), s32(pgid))
    sync_ids(p.sys)
    return 0


@syscall("setsid", "")
def sys_setsid(p):
    """pid_t setsid(void);"""
    sid = p.sys.table.setsid(p.task.pid)
    sync_ids(p.sys)
    return sid


@syscall("arch_prctl", "archprctl ptr")
def sys_arch_prctl(p, code, addr):
    """int arch_prctl(int code, unsigned long addr);"""
    if code == C.ARCH_SET_FS:
        p.cpu.write("fs_base", addr)
    elif code == C.ARCH_SET_GS:
        p.cpu.write("gs_base", addr)
    elif code == C.ARCH_GET_FS:
        p.write(addr, struct.pack("<Q", p.cpu.read("fs_base")))
    elif code == C.ARCH_GET_GS:
        p.write(addr, struct.pack("<Q", p.cpu.read("gs_base")))
    else:
        raise SyscallError(E.EINVAL, f"arch_prctl code {code:#x}")
    return 0


@syscall("set_tid_address", "ptr")
def sys_set_tid_address(p, tidptr):
    """pid_t set_tid_address(int *tidptr);"""
    p.task.tid_address = tidptr
    return p.task.pid


@syscall("set_robust_list", "ptr size")
def sys_set_robust_list(p, head, length):
    """long set_robust_list(struct robust_list_head *head, size_t len);"""
    if length != 24:
        raise SyscallError(E.EINVAL, "robust list head size")
    p.task.robust_list = head
    return 0


@syscall("rseq", "ptr size hex hex")
def sys_rseq(p, rseq, length, flags, sig):
    """int rseq(struct rseq *rseq, uint32_t rseq_len, int flags, uint32_t sig);"""
    # vsnap has one thread and no preemption, so restartable sequences have nothing to
    # restart; refusing is allowed by the ABI and glibc carries on without them.
    raise SyscallError(E.ENOSYS, "rseq is not supported")


@syscall("sched_getaffinity", "int size ptr")
def sys_sched_getaffinity(p, pid, size, mask):
    """int sched_getaffinity(pid_t pid, size_t cpusetsize, cpu_set_t *mask);"""
    if size < 8:
        raise SyscallError(E.EINVAL, "cpuset too small")
    p.write(mask, struct.pack("<Q", 1))  # one CPU
    return 8


@syscall("sched_yield", "")
def sys_sched_yield(p):
    """int sched_yield(void);"""
    if len(p.sys.processes) > 1:
        p.yielded = True  # the turn ends after this call: the next process runs
        p.cpu.stop()
    return 0

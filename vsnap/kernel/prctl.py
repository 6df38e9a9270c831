"""Per-process switches: prctl (name, dumpable, subreaper, parent-death signal, no_new_privs)
and membarrier. Their state lives in the Process (process.py), so checkpoints carry it.

Options vsnap does not implement fail with EINVAL, as Linux fails an option it does not know,
and are named once through the kernel's notice (and counted for --stats): never a silent 0.
"""
from __future__ import annotations

import struct

from ..abi import errno as E
from ..errors import SyscallError
from .fsutil import s32
from .registry import syscall

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
PR_GET_KEEPCAPS, PR_SET_KEEPCAPS = 7, 8
PR_SET_NAME, PR_GET_NAME = 15, 16
PR_GET_SECCOMP = 21
PR_CAPBSET_READ = 23
PR_GET_SECUREBITS = 27
PR_SET_TIMERSLACK, PR_GET_TIMERSLACK = 29, 30
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_GET_TID_ADDRESS = 40
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42
DEFAULT_TIMERSLACK_NS = 50_000

# names of the options Linux knows and vsnap refuses, for the notice (linux/prctl.h)
OTHER_OPTIONS = {
    5: "PR_GET_UNALIGN", 6: "PR_SET_UNALIGN",
    9: "PR_GET_FPEMU", 10: "PR_SET_FPEMU", 11: "PR_GET_FPEXC", 12: "PR_SET_FPEXC",
    13: "PR_GET_TIMING", 14: "PR_SET_TIMING", 19: "PR_GET_ENDIAN", 20: "PR_SET_ENDIAN",
    22: "PR_SET_SECCOMP", 24: "PR_CAPBSET_DROP", 25: "PR_GET_TSC", 26: "PR_SET_TSC",
    28: "PR_SET_SECUREBITS",
    31: "PR_TASK_PERF_EVENTS_DISABLE", 32: "PR_TASK_PERF_EVENTS_ENABLE",
    33: "PR_MCE_KILL", 34: "PR_MCE_KILL_GET", 35: "PR_SET_MM", 45: "PR_SET_FP_MODE",
    46: "PR_GET_FP_MODE", 47: "PR_CAP_AMBIENT", 53: "PR_SET_SPECULATION_CTRL",
    52: "PR_GET_SPECULATION_CTRL", 54: "PR_SET_TAGGED_ADDR_CTRL",
    56: "PR_GET_TAGGED_ADDR_CTRL", 57: "PR_SET_IO_FLUSHER", 58: "PR_GET_IO_FLUSHER",
    59: "PR_SET_SYSCALL_USER_DISPATCH", 62: "PR_SCHED_CORE", 0x53564D41: "PR_SET_VMA",
    0x59616D61: "PR_SET_PTRACER",
}
CAP_LAST_CAP = 40   # CAP_CHECKPOINT_RESTORE in Linux 6.1
NSIG = 64


def read_upto(p, addr: int, n: int) -> bytes:
    """Up to `n` bytes of a string at `addr`, stopping at a NUL (strncpy_from_user): only
    the bytes actually needed must be readable."""
    out = b""
    while len(out) < n:
        at = addr + len(out)
        chunk = p.read(at, min(n - len(out), 0x1000 - (at & 0xFFF)))
        nul = chunk.find(b"\0")
        if nul >= 0:
            return out + chunk[:nul]
        out += chunk
    return out


def _put_int(p, addr: int, value: int) -> int:
    p.write(addr, struct.pack("<i", value))
    return 0


@syscall("prctl", "int hex hex hex hex")
def sys_prctl(p, option, arg2, arg3, arg4, arg5):
    """int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
    unsigned long arg5);"""
    tk = p.task
    option = s32(option)
    if option == PR_SET_NAME:
        p.exec.comm = read_upto(p, arg2, 15).decode("utf-8", "surrogateescape")
        return 0
    if option == PR_GET_NAME:
        p.write(arg2, p.exec.comm.encode("utf-8", "surrogateescape")[:15].ljust(16, b"\0"))
        return 0
    if option == PR_SET_DUMPABLE:
        if arg2 not in (0, 1):  # 2 (SUID_DUMP_ROOT) is for the kernel's own use
            raise SyscallError(E.EINVAL, f"dumpable {arg2}")
        tk.dumpable = arg2
        return 0
    if option == PR_GET_DUMPABLE:
        return tk.dumpable
    if option == PR_SET_PDEATHSIG:
        if arg2 > NSIG:
            raise SyscallError(E.EINVAL, f"signal {arg2}")
        tk.pdeathsig = arg2  # sent when the parent ends (sched.ended; fork clears it)
        return 0
    if option == PR_GET_PDEATHSIG:
        return _put_int(p, arg2, tk.pdeathsig)
    if option == PR_SET_CHILD_SUBREAPER:
        tk.child_subreaper = int(arg2 != 0)  # orphans below it come to it (proctable.py)
        p.sys.table.set_subreaper(tk.pid, bool(tk.child_subreaper))
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        return _put_int(p, arg2, tk.child_subreaper)
    if option == PR_SET_NO_NEW_PRIVS:
        if arg2 != 1 or arg3 or arg4 or arg5:
            raise SyscallError(E.EINVAL, "PR_SET_NO_NEW_PRIVS takes 1, 0, 0, 0")
        tk.no_new_privs = 1  # there is no exec, let alone a set-uid one, but keep the bit
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        if arg2 or arg3 or arg4 or arg5:
            raise SyscallError(E.EINVAL, "PR_GET_NO_NEW_PRIVS takes no arguments")
        return tk.no_new_privs
    if option == PR_SET_KEEPCAPS:
        if arg2 > 1:
            raise SyscallError(E.EINVAL, f"keepcaps {arg2}")
        tk.keepcaps = arg2  # nothing to keep (no capabilities, no setuid), but kept and shown
        return 0
    if option == PR_GET_KEEPCAPS:
        return tk.keepcaps
    if option == PR_SET_TIMERSLACK:
        # the slack of timer expiries: virtual timers expire exactly, so it is only kept
        tk.timerslack_ns = arg2 or DEFAULT_TIMERSLACK_NS
        return 0
    if option == PR_GET_TIMERSLACK:
        return tk.timerslack_ns
    if option == PR_GET_TID_ADDRESS:
        p.write(arg2, tk.tid_address.to_bytes(8, "little"))
        return 0
    if option == PR_SET_THP_DISABLE:
        if arg3 or arg4 or arg5:
            raise SyscallError(E.EINVAL, "PR_SET_THP_DISABLE takes one argument")
        tk.thp_disable = int(arg2 != 0)  # no huge pages here anyway: kept and shown
        return 0
    if option == PR_GET_THP_DISABLE:
        if arg2 or arg3 or arg4 or arg5:
            raise SyscallError(E.EINVAL, "PR_GET_THP_DISABLE takes no arguments")
        return tk.thp_disable
    if option == PR_GET_SECCOMP:
        return 0  # no filter can be installed (PR_SET_SECCOMP is refused): mode 0
    if option == PR_GET_SECUREBITS:
        return 0  # an ordinary process: no securebits (setting them is refused)
    if option == PR_CAPBSET_READ:
        if arg2 > CAP_LAST_CAP:
            raise SyscallError(E.EINVAL, f"capability {arg2}")
        return 1  # the bounding set of an ordinary process is full
    name = OTHER_OPTIONS.get(option)
    if name is None:  # Linux knows no such option either
        raise SyscallError(E.EINVAL, f"prctl option {option}")
    p.sys.refuse(f"prctl({name})", f"vsnap: prctl option {option} ({name}) is not implemented: "
             f"EINVAL")
    raise SyscallError(E.EINVAL, name)


# membarrier ---------------------------------------------------------------------------------
MB_QUERY, MB_GLOBAL, MB_GLOBAL_EXPEDITED, MB_REGISTER_GLOBAL_EXPEDITED = 0, 1, 2, 4
MB_PRIVATE_EXPEDITED, MB_REGISTER_PRIVATE_EXPEDITED = 8, 16
MB_PRIVATE_EXPEDITED_SYNC_CORE, MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 32, 64
MB_PRIVATE_EXPEDITED_RSEQ, MB_REGISTER_PRIVATE_EXPEDITED_RSEQ = 128, 256
MB_FLAG_CPU = 1
MB_SUPPORTED = 0x1FF  # every command of Linux 6.1 (GET_REGISTRATIONS came in 6.3)
# each private command needs its registration first (EPERM otherwise)
MB_NEEDS = {MB_PRIVATE_EXPEDITED: MB_REGISTER_PRIVATE_EXPEDITED,
            MB_PRIVATE_EXPEDITED_SYNC_CORE: MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
            MB_PRIVATE_EXPEDITED_RSEQ: MB_REGISTER_PRIVATE_EXPEDITED_RSEQ}
MB_REGISTERS = (MB_REGISTER_GLOBAL_EXPEDITED, MB_REGISTER_PRIVATE_EXPEDITED,
                MB_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, MB_REGISTER_PRIVATE_EXPEDITED_RSEQ)


@syscall("membarrier", "int hex int")
def sys_membarrier(p, cmd, flags, cpu_id):
    """int membarrier(int cmd, unsigned int flags, int cpu_id);

    A barrier on every running thread of the process (or the system). The guest is one
    thread on one emulated CPU that runs instructions in order, and the system call itself
    orders memory: every command is a barrier already, so each does only its bookkeeping
    (registrations, which the private commands require as Linux does)."""
    cmd, flags = s32(cmd), flags & 0xFFFFFFFF
    if flags and not (cmd == MB_PRIVATE_EXPEDITED_RSEQ and flags == MB_FLAG_CPU):
        raise SyscallError(E.EINVAL, f"membarrier flags {flags:#x}")
    if cmd == MB_QUERY:
        return MB_SUPPORTED
    if cmd in (MB_GLOBAL, MB_GLOBAL_EXPEDITED):
        return 0
    if cmd in MB_REGISTERS:
        p.task.membarrier |= cmd
        return 0
    if cmd in MB_NEEDS:
        if not p.task.membarrier & MB_NEEDS[cmd]:
            raise SyscallError(E.EPERM, "membarrier: not registered for this command")
        return 0
    raise SyscallError(E.EINVAL, f"membarrier command {cmd}")

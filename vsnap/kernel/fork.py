"""Making and waiting for processes: fork, vfork, clone (for processes, not threads), wait4,
waitid. exit is in proc.py; execve in exec.py; the rules of pids, groups and zombies are the
process table's (proctable.py); who runs when is the scheduler's (sched.py).

A forked child is a new Process with a copy of its parent's engine and memory (cpufork.py,
memfork.py: every touched page copied, MAP_SHARED memory shared), its fd table sharing every
open file description, its signal actions and mask; it does not inherit pending signals,
alarm, interval or POSIX timers (fork(2)). It returns 0 from the same call.
"""
from __future__ import annotations

import copy
import struct
from dataclasses import replace

from .. import signals as S
from ..abi import consts as C
from ..abi import errno as E
from ..errors import Blocked, SyscallError
from ..waitstatus import WEXITED, WNOHANG, WNOWAIT, siginfo_of
from ..timers import Timers
from .fsutil import s32
from .registry import syscall

QUANTUM = 1_000_000   # sched.QUANTUM (not imported: sched imports the kernel)
STATUS_BUDGET = 137  # as --max-memory: the guest is killed (SIGKILL), as by the OOM killer
CSIGNAL = 0xFF
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID = 0x100000, 0x200000
CLONE_DETACHED, CLONE_UNTRACED, CLONE_CHILD_SETTID = 0x400000, 0x800000, 0x1000000
# what vsnap does as Linux does; anything else (threads, namespaces, shared tables) is refused
SUPPORTED = CSIGNAL | CLONE_VM | CLONE_VFORK | CLONE_PARENT_SETTID | CLONE_CHILD_SETTID \
    | CLONE_CHILD_CLEARTID | CLONE_SETTLS | CLONE_DETACHED | CLONE_UNTRACED


def fork_process(p, *, stack: int = 0, tls: int | None = None, share_vm: bool = False):
    """A child of p that is p's copy (fork(2)), at the instruction after this call. With
    share_vm (vfork, posix_spawn: CLONE_VM | CLONE_VFORK) the child borrows p's engine and
    memory while p waits, as Linux's child shares p's memory: sched.start_borrow and
    give_back switch the engine between them."""
    from ..cpufork import fork_hardware
    from ..sched import wire
    from .core import Process
    system = p.sys
    table = system.table
    nproc = p.limits.soft(C.RLIMIT_NPROC)
    if len(table.processes()) >= nproc:  # every guest process is the same user's
        raise SyscallError(E.EAGAIN, f"RLIMIT_NPROC ({nproc}) reached")
    if len(table.processes()) >= table.max_processes:
        # vsnap's budget, not the guest's limit: the run stops (a fork bomb, most likely)
        from ..machine import RunResult
        system.over_budget = RunResult(
            STATUS_BUDGET, "SIGKILL", f"vsnap: guest stopped: it forked past the budget of "
            f"{table.max_processes} processes (--max-processes, zombies included); raise it "
            f"if the program needs more")
        p.cpu.stop()
        raise SyscallError(E.EAGAIN, "--max-processes reached")
    pid = table.fork(p.task.pid)
    try:
        cpu, mem = (p.cpu, p.mem) if share_vm else fork_hardware(p.cpu, p.mem)
    except BaseException:
        system.table.exit(pid, 0)
        system.table.reap(pid)
        raise
    child = Process(system, cpu, mem)
    child.task = replace(p.task, pid=pid, ppid=p.task.pid, pdeathsig=0, exit_status=None,
                         exit_signal=None)
    child.exec = copy.deepcopy(p.exec)
    child.exe_host, child.exe_guest = p.exe_host, p.exe_guest
    child.fds = p.fds.fork()
    child.fds.on_close = child._closed
    sig = p.signals
    child.signals = S.SignalState(actions=dict(sig.actions), blocked=sig.blocked,
                                  altstack_sp=sig.altstack_sp,
                                  altstack_size=sig.altstack_size,
                                  altstack_flags=sig.altstack_flags)
    child.limits = copy.deepcopy(p.limits)
    child.timers = Timers()
    child.program = p.program
    # the child returns 0 from the call, after the syscall instruction (the hook is the
    # parent's: rip is the instruction itself in the copied context)
    rip = p.cpu.read("rip") + 2
    regs = {"rax": 0, "rip": rip, "rcx": rip, "r11": p.cpu.read("rflags")}
    if stack:
        regs["rsp"] = stack
    if tls is not None:
        regs["fs_base"] = tls
    if share_vm:
        child.borrowed_from, child.borrow_regs = p, {**p.cpu.snapshot_registers(), **regs}
        p.lent_to = child
        # the engine's count is the parent's until the child's first turn: the parent parks
        # at this call, which counts once, when it returns (Process._park takes it back)
        p.lent_count = child.borrow_base = p.cpu.instructions - 1
    else:
        wire(child)
        cpu.instructions = 0  # its own count starts now; the parent's stays the parent's
        cpu.write_many(regs)
    system.processes[pid] = child
    system.forked = True
    # others can run now: this turn gets a quantum at most (System.turn keeps its end)
    p.cpu.end_turn_within(QUANTUM)
    t = system.turn
    if t is not None and t[0] == p.task.pid:
        end = p.cpu.instructions + QUANTUM
        t[1] = end if t[1] is None else min(t[1], end)
    return child


@syscall("fork", "")
def sys_fork(p):
    """pid_t fork(void);"""
    return fork_process(p).task.pid


@syscall("vfork", "")
def sys_vfork(p):
    """pid_t vfork(void);"""
    return _clone(p, CLONE_VM | CLONE_VFORK | S.SIGCHLD, 0, 0, 0, 0)


@syscall("clone", "hex ptr ptr ptr ptr")
def sys_clone(p, flags, stack, parent_tid, child_tid, tls):
    """long clone(unsigned long flags, void *stack, int *parent_tid, int *child_tid,
                  unsigned long tls);"""
    return _clone(p, flags, stack, parent_tid, child_tid, tls)


@syscall("clone3", "ptr size")
def sys_clone3(p, args, size):
    """long clone3(struct clone_args *cl_args, size_t size);  (ENOSYS: libc falls back to
    clone, which vsnap has)"""
    raise SyscallError(E.ENOSYS, "clone3: vsnap serves clone instead")


def _clone(p, flags, stack, parent_tid, child_tid, tls):
    waiting = p.vfork_child
    if waiting is not None:  # the parent's call again, after the vfork child let go
        p.vfork_child = None
        return waiting
    unknown = flags & ~SUPPORTED
    if flags & CLONE_THREAD or unknown:
        what = "threads (CLONE_THREAD)" if flags & CLONE_THREAD else f"flags {unknown:#x}"
        p.sys.refuse(f"clone({what})", f"vsnap: the guest asked clone for {what}: vsnap runs "
                     f"processes only; refused with EINVAL")
        raise SyscallError(E.EINVAL, f"clone: {what}")
    if flags & CSIGNAL != S.SIGCHLD:
        p.sys.refuse("clone(exit signal)", f"vsnap: clone with exit signal {flags & CSIGNAL} "
                     f"(only SIGCHLD is served); refused with EINVAL")
        raise SyscallError(E.EINVAL, "clone: exit signal other than SIGCHLD")
    vfork = bool(flags & CLONE_VM and flags & CLONE_VFORK)
    if flags & CLONE_VM and not vfork:  # refused before anything is made
        p.sys.refuse("clone(CLONE_VM)", "vsnap: clone(CLONE_VM) without CLONE_VFORK shares "
                     "memory between running processes, which vsnap cannot; refused")
        raise SyscallError(E.EINVAL, "clone: CLONE_VM without CLONE_VFORK")
    child = fork_process(p, stack=stack, tls=tls if flags & CLONE_SETTLS else None,
                         share_vm=vfork)
    pid = child.task.pid
    tid = struct.pack("<i", pid)
    if flags & CLONE_PARENT_SETTID:
        p.write(parent_tid, tid)
    if flags & CLONE_CHILD_SETTID:
        child.write(child_tid, tid)
    if flags & CLONE_CHILD_CLEARTID:
        child.task.tid_address = child_tid
    if vfork:
        # vfork and posix_spawn: the child runs in the parent's memory, on its engine, and
        # the parent waits until the child execs or ends, as on Linux
        p.vfork_child = pid
        raise Blocked(f"vfork: waiting for child {pid} to exec or exit",
                      lambda: child.ended is not None or child.execd)
    return pid


@syscall("wait4", "int ptr hex ptr")
def sys_wait4(p, pid, wstatus, options, rusage):
    """pid_t wait4(pid_t pid, int *wstatus, int options, struct rusage *rusage);"""
    table, me, pid = p.sys.table, p.task.pid, s32(pid)
    got = table.wait4(me, pid, options)
    if got is None:
        if options & WNOHANG:
            return 0
        raise Blocked("wait4 for a child", lambda: _news(
            lambda o: table.wait(me, pid, o), options | WEXITED))
    child, status = got
    times = _reaped(p, child)
    if wstatus:
        p.write(wstatus, struct.pack("<i", status))
    if rusage:
        p.write(rusage, _rusage(times))
    return child


@syscall("waitid", "int int ptr hex ptr")
def sys_waitid(p, idtype, id_, infop, options, rusage):
    """int waitid(idtype_t idtype, id_t id, siginfo_t *infop, int options);"""
    table, me, id_ = p.sys.table, p.task.pid, s32(id_)
    got = table.waitid(me, idtype, id_, options)
    if got is None:
        if options & WNOHANG:
            if infop:
                p.write(infop, bytes(128))  # si_pid 0: nothing to report
            return 0
        raise Blocked("waitid for a child", lambda: _news(
            lambda o: table.waitid(me, idtype, id_, o), options))
    child, status = got
    times = _reaped(p, child)
    code, value = siginfo_of(status)
    if infop:
        info = struct.pack("<iiii", S.SIGCHLD, 0, code, 0)
        info += struct.pack("<iIi4xqq", child, p.task.uid, value, 0, 0)
        p.write(infop, info.ljust(128, b"\0"))
    if rusage:
        p.write(rusage, _rusage(times))
    return 0


def _news(look, options) -> bool:
    """Would the wait return now (a child to report, or ECHILD)? Looked at without taking."""
    try:
        return look(options | WNOWAIT) is not None
    except SyscallError:
        return True


def _reaped(p, child: int) -> tuple[int, int]:
    """A child's CPU time (user, system ns, its own waited children's included) once the
    wait took it away: added to the waiter's RUSAGE_CHILDREN, as Linux's wait does. A stop
    or continue report, or a WNOWAIT look, leaves it: (0, 0) then."""
    if p.sys.table.get(child) is not None:
        return 0, 0
    user, system = p.sys.child_times.pop(child, (0, 0))
    p.children_ns[0] += user
    p.children_ns[1] += system
    return user, system


def _rusage(times: tuple[int, int]) -> bytes:
    """struct rusage with the CPU time (the virtual clock's: 1 ns per instruction, 1 us
    per system call); the rest 0."""
    user, system = times
    return struct.pack("<qqqq", user // 10**9, user % 10**9 // 1000,
                       system // 10**9, system % 10**9 // 1000).ljust(144, b"\0")

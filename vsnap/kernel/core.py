"""The process as the kernel sees it (state beyond its registers), and the system call
dispatcher.

Handlers (files.py, mm.py, ...) receive the calling Process and the raw argument values; they
check the arguments, move bytes between guest memory and kernel objects, and raise
SyscallError. Only `dispatch` turns a SyscallError into -errno in rax. What processes share
(sandbox, terminal, clock, locks) is the process's `sys` (vsnap/system.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import signals as S
from ..abi import errno as E
from ..abi import syscalls
from ..abi.consts import RLIMIT_CPU
from ..clock import NS_PER_INSTRUCTION, SYSCALL_NS
from ..errors import Blocked, Execed, GuestExit, SyscallError
from ..fdtable import FdTable
from ..memory import AddressSpace
from ..task import ExecLayout, Task
from ..rlimits import INF, Limits
from ..signals import SignalState
from ..timers import Timers
from .registry import SYSCALLS
from .sigframe import deliver
from .signal import fire_timers
from .timers import next_deadline

MASK64 = (1 << 64) - 1
RT_SIGRETURN = syscalls.NUMBERS["rt_sigreturn"]
SIGWINCH = 28


@dataclass
class Console:
    """Where the guest's terminal goes: by default vsnap's own stdin, stdout and stderr.

    Notebooks and tests pass other callables to capture the output as bytes.
    """

    read: callable = field(default=lambda n: os.read(0, n))
    write_out: callable = field(default=lambda b: _write_all(1, b))
    write_err: callable = field(default=lambda b: _write_all(2, b))
    tty: tuple = (False, False, False)  # is each of stdin, stdout, stderr a terminal?
    # wait(timeout) -> "data" | "signal" | "timeout": blocks until input can be read, a host
    # signal arrives, or `timeout` seconds pass. None: reading never blocks (captured input).
    wait: callable = None
    host_stdin: bool = False  # read is os.read(0): vsnap's own stdin
    pending: callable = None  # () -> bytes of input waiting (FIONREAD), captured input

    @classmethod
    def host(cls) -> "Console":
        return cls(tty=tuple(os.isatty(fd) for fd in (0, 1, 2)), host_stdin=True)

    def write(self, stream: str, data: bytes) -> None:
        (self.write_err if stream == "stderr" else self.write_out)(data)

    def isatty(self, stream: str) -> bool:
        return self.tty[{"stdin": 0, "stdout": 1, "stderr": 2}.get(stream, 1)]


class Capture:
    """A console that keeps the guest's output and feeds it `stdin` (tests, notebooks,
    vsnap.run): `.console` for the machine, `.out` and `.err` as bytearrays."""

    def __init__(self, stdin: bytes = b""):
        self.out, self.err, self.inp = bytearray(), bytearray(), bytearray(stdin)
        self.console = Console(read=self._read, write_out=self.out.extend,
                               write_err=self.err.extend, pending=lambda: len(self.inp))

    def _read(self, n: int) -> bytes:
        chunk = bytes(self.inp[:n])
        del self.inp[:n]
        return chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Process:
    """One guest process: its engine (cpu) and memory, its fd table, signal state, limits,
    timers and identity (task). What processes share is `sys` (vsnap/system.py)."""

    def __init__(self, system, cpu, mem: AddressSpace):
        self.sys = system
        self.cpu = cpu
        self.mem = mem
        self.fds = FdTable()
        self.fds.on_close = self._closed
        self.task = Task()
        self.exec = ExecLayout()  # what exec left for /proc/self (cmdline, auxv, ...)
        self.signals = SignalState()
        self.limits = Limits()
        self.timers = Timers()
        self.crash: dict | None = None  # why a crash image was taken (--save-on-crash)
        self.core_dumped = False  # it died and its core was written (crashdump.py)
        self.last_call = (0, 0)  # (number, result) of the latest system call: for SA_RESTART
        self.blocked: Blocked | None = None  # parked at its syscall instruction, and why
        self.ended = None  # how it ended (a RunResult), once it has
        self.memo = None  # (call site, value): what a parked call keeps for its retry
        self.retrying = False  # woken from a park: its call runs again before anything
        self.wake_by_signal = False  # parked, and a signal came: the call ends first
        self.yielded = False  # sched_yield: its turn ends after the call
        # vfork: the child runs on its parent's engine and memory (sched.start_borrow)
        self.borrowed_from = None  # (the child) whose hardware it runs on
        self.borrow_regs = None    # (the child) its registers, until its first turn
        self.borrow_base = 0       # (the child) the engine's count when it took it over
        self.lent_to = None        # (the parent) the child that runs on its hardware
        self.lent_context = None   # (the parent) its engine state, to put back
        self.lent_count = 0        # (the parent) its count, to put back
        self.give_back = None      # (the child, after exec) (parent, engine) to restore
        self.ckpt_return = False   # saving from its own sys_checkpoint (kernel/ckpt.py)
        self.pending_write = None  # a pipe write parked part way (kernel/pipefile.py)
        self.syscalls = 0  # system calls it has made (its CPU time: clock.py)
        # CPU time of the children it has waited for (RUSAGE_CHILDREN, times): user, system
        self.children_ns = [0, 0]
        self.vfork_child: int | None = None  # a vfork child it waits for (kernel/fork.py)
        self.execd = False  # has exec'd since it was forked (a vfork parent may go on)
        # the program it runs, for /proc/self/exe: the host file, and its guest path (None
        # when the file lies outside the sandbox, as `vsnap run` allows for the first one)
        self.exe_host: str | None = None
        self.exe_guest: str | None = None
        self.program = None  # its loader.Program
        self.base_instructions = 0  # run by the programs it ran before its last exec
        self.retired_hardware: list = []  # engines and memory exec left, freed once stopped

    @property
    def instructions(self) -> int:
        """Instructions this process has run (its engine counts them)."""
        if self.lent_to is not None:
            return self.base_instructions + self.lent_count
        if self.borrowed_from is not None:
            return self.base_instructions + self.cpu.instructions - self.borrow_base
        return self.base_instructions + self.cpu.instructions

    # its CPU time (clock.py's rates, for this process alone) --------------------------------
    @property
    def user_ns(self) -> int:
        return self.instructions * NS_PER_INSTRUCTION

    @property
    def system_ns(self) -> int:
        return self.syscalls * SYSCALL_NS

    @property
    def cpu_ns(self) -> int:
        return self.user_ns + self.system_ns

    def at_own(self, t: int, now: int) -> int:
        """The machine's instruction count at which this process's clock (now `now`) reaches
        t, if only it runs and makes no system call (a CPU timer's deadline)."""
        return self.sys.instructions() + max(0, -(-(t - now) // NS_PER_INSTRUCTION))

    def release(self, memory: bool = True) -> None:
        """Let go of what the process holds on the host (exit, or the end of the run):
        its files now, its memory back to the pool for the next fork."""
        from ..memfork import release_memory
        self.fds.close_all()
        if memory:
            release_memory(self.mem)
        self.drop_retired()

    def drop_retired(self) -> None:
        """Free the hardware an exec replaced (its engine has stopped by now), or give a
        vfork parent its engine back."""
        from ..memfork import release_memory
        if self.give_back is not None:
            from ..sched import restore_lender
            restore_lender(*self.give_back)
            self.give_back = None
        while self.retired_hardware:
            _, mem = self.retired_hardware.pop()
            release_memory(mem)
        from .mapmtime import settle
        settle(self.sys)  # files its memory mapped shared for writing (gone if it exited)

    def _closed(self, f, last: bool) -> None:
        from .filelocks import closed
        closed(self, f, last)

    # guest memory helpers --------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        try:
            return self.mem.read(addr, size)
        except SyscallError:
            if not self._grow_stack(addr):
                raise
            return self.mem.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        if data:
            try:
                self.mem.write(addr, data)
            except SyscallError:
                if not self._grow_stack(addr):
                    raise
                self.mem.write(addr, data)

    def _grow_stack(self, addr: int) -> bool:
        """The kernel touching guest memory below the stack grows it, as a guest's own access
        does (a signal frame just under the stack's lowest page, say)."""
        from .limits import grow_stack
        return grow_stack(self, addr)

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string from guest memory (ENAMETOOLONG past `limit`)."""
        if addr == 0:
            raise SyscallError(E.EFAULT, "NULL string")
        out = b""
        while True:
            # read up to the end of the page so that a string at the end of a mapping works
            chunk = self.read(addr + len(out), 0x1000 - ((addr + len(out)) & 0xFFF))
            nul = chunk.find(b"\0")
            if nul >= 0:
                out += chunk[:nul]
                break
            out += chunk
            if len(out) > limit:
                raise SyscallError(E.ENAMETOOLONG, "string too long")
        if len(out) >= limit:
            raise SyscallError(E.ENAMETOOLONG, "string too long")
        return out

    def read_path(self, addr: int) -> str:
        return os.fsdecode(self.read_cstr(addr))

    # dispatch ----------------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Serve the system call the guest just made (the syscall hook calls this)."""
        regs = self.cpu.syscall_registers()
        nr = regs[0]
        self.sys.syscall_count += 1
        self.syscalls += 1
        self.sys.clock.tick()
        self.mem.check_touched(self.sys.syscall_count)  # the budget, before the call is served
        entry = SYSCALLS.get(nr)
        if entry is None:
            result = -E.ENOSYS
            self.sys.unknown_reported.add(nr)
            self.sys.refuse(syscalls.name(nr), f"vsnap: guest called unimplemented syscall {nr} "
                        f"({syscalls.name(nr)})")
            if self.sys.strace:
                self._strace(f"{syscalls.name(nr)}(...) = -1 ENOSYS")
        else:
            args = regs[1:1 + entry.nargs]
            try:
                if self.sys.strace:
                    result = self._traced(entry, args)
                else:
                    try:
                        result = entry.handler(self, *args)
                    except SyscallError as e:
                        result = -e.errno
            except Blocked as b:
                self._park(b)
                return
            except Execed:
                self.memo, self.last_call = None, (nr, 0)
                return  # the new program starts at its entry, registers as exec left them
        self.memo = None
        self._return(nr, result)
        self.last_call = (nr, result)
        self._after_syscall()

    def remember(self, value):
        """`value` the first time this call computes it; the same value when the call is
        made again after a park (a sleep's end must not move each time it is retried)."""
        key = self.cpu.syscall_site()
        if self.memo is not None and self.memo[0] == key:
            return self.memo[1]
        self.memo = (key, value)
        return value

    def _park(self, why: Blocked) -> None:
        """The call must wait: undo its entry (the instruction, the call and its microsecond
        are counted when it completes) and stop at the `syscall` instruction, to run it again
        once `why.ready()` (errors.Blocked)."""
        self.sys.syscall_count -= 1
        self.syscalls -= 1
        self.sys.clock.untick()
        self.cpu.rewind_syscall()
        self.blocked = why

    def interrupt(self) -> None:
        """A signal came for this parked process: its call ends with EINTR, and the signal is
        delivered as at the end of any call (SA_RESTART makes the handler return to the
        call, which runs again; an ignored signal restarts it unseen), as Linux does."""
        why, self.blocked, self.memo = self.blocked, None, None
        result = why.interrupted()  # -EINTR, or the bytes a write moved before it waited
        cpu = self.cpu
        nr, rip = cpu.read("rax"), cpu.read("rip")
        self.sys.syscall_count += 1
        self.syscalls += 1
        self.sys.clock.tick()
        cpu.counter.count += 1
        cpu.write_many({"rax": result & MASK64, "rcx": rip + 2, "r11": cpu.read("rflags")})
        # a wait that Linux ends with EINTR whatever SA_RESTART says (a socket timeout)
        self.last_call = (nr if getattr(why, "restart", True) else -1, result)
        # deliver() works as from the syscall hook, where Unicorn adds 2 to rip afterwards
        try:
            deliver(self, in_syscall=True)
        finally:
            cpu.write("rip", cpu.read("rip") + 2)

    def _return(self, nr: int, result: int) -> None:
        if nr == RT_SIGRETURN:  # it restored every register, rcx and r11 included
            self.cpu.set_rax(result & MASK64)
        else:
            self.cpu.syscall_return(result & MASK64)

    def _after_syscall(self) -> None:
        """On the way back to user mode: timers, host signals, then delivery (Linux's
        exit_to_user_mode)."""
        sig = self.signals
        if sig.alarm_deadline is not None or self.timers.armed \
                or self.limits.values[RLIMIT_CPU][0] != INF or self.cpu.deadline is not None:
            # this call moved the clock (1 us, or a sleep) and may have set a timer: fire
            # what expired, and aim the CPU at the next deadline, as an instruction count
            fire_timers(self)
            self.cpu.set_deadline(next_deadline(self))
        if self.sys.host_signals:
            self.take_host_signals()
        if sig.pending and sig.deliverable():
            deliver(self, in_syscall=True)

    def take_host_signals(self) -> None:
        while self.sys.host_signals:
            signo = self.sys.host_signals.popleft()
            if signo == SIGWINCH:  # the host terminal's new size: the guest's terminal's
                from .tty import host_resized
                host_resized(self)
                continue
            self.signals.post(S.SigInfo(signo, S.SI_USER, pid=0, uid=0))

    def _traced(self, entry, args) -> int:
        """The handler's result, with a strace line around the call."""
        from ..trace import format_call, format_result
        call = format_call(self, entry, args)
        try:
            result = entry.handler(self, *args)
        except SyscallError as e:
            result = -e.errno
        except GuestExit:
            self._strace(f"{call} = ?")
            raise
        except Blocked:
            raise  # said once, when the call completes
        except Execed:
            self._strace(f"{call} = 0")
            raise
        self._strace(f"{call} = {format_result(self, entry, args, result)}")
        return result

    def _strace(self, line: str) -> None:
        """A --strace line; once the guest has forked, with the pid first, as strace -f."""
        if self.sys.forked:
            line = f"[pid {self.task.pid:>5}] {line}"
        self.sys.strace(line)

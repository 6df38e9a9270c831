"""The kernel: the state a process has beyond its registers, and the system call dispatcher.

Handlers (fs.py, mm.py, ...) receive this object and the raw argument values; they check the
arguments, move bytes between guest memory and kernel objects, and raise SyscallError. Only
`dispatch` turns a SyscallError into -errno in rax.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field

from collections import deque

from .. import signals as S
from ..abi import errno as E
from ..abi import syscalls
from ..abi.consts import RLIMIT_CPU
from ..clock import Clock, Random
from ..errors import SyscallError
from ..fdtable import FdTable
from ..locks import LockBook
from ..memory import AddressSpace
from ..process import ExecLayout, Process
from ..rlimits import INF, Limits
from ..signals import SignalState
from ..timers import Timers
from .registry import SYSCALLS
from .sigframe import deliver
from .signal import fire_timers
from .timers import next_deadline
from .virtual import VirtualFiles

MASK64 = (1 << 64) - 1
RT_SIGRETURN = syscalls.NUMBERS["rt_sigreturn"]


class GuestExit(Exception):
    """The guest called exit or exit_group: stop the CPU, report `status`."""

    def __init__(self, status: int):
        super().__init__(f"exit {status}")
        self.status = status


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
                               write_err=self.err.extend)

    def _read(self, n: int) -> bytes:
        chunk = bytes(self.inp[:n])
        del self.inp[:n]
        return chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Kernel:
    def __init__(self, cpu, mem: AddressSpace, vfs, console: Console, *, seed: int = 0):
        self.cpu = cpu
        self.mem = mem
        self.vfs = vfs
        self.console = console
        self.fds = FdTable()
        self.locks = LockBook()  # flock, record locks and leases (kernel/filelocks.py)
        self.fds.on_close = self._closed
        self.proc = Process()
        self.exec = ExecLayout()  # what exec left for /proc/self (cmdline, auxv, ...)
        self.clock = Clock()
        self.random = Random(seed)
        self.signals = SignalState()
        self.limits = Limits()
        self.timers = Timers()
        # signals from the host (Ctrl-C, kill PID) arrive on another thread: they wait here
        # until the main thread takes them, at a system call or when the CPU is stopped
        self.host_signals: deque[int] = deque()
        self.wait_for_host_signal = lambda: False  # the CLI blocks here for pause()
        self.inodes: dict[tuple[int, int], int] = {}  # host (dev, ino) -> guest inode number
        self.ctimes: dict[int, int] = {}  # guest inode -> virtual time of its last status change
        self.syscall_count = 0
        self.crash: dict | None = None  # why a crash image was taken (--save-on-crash)
        self.last_call = (0, 0)  # (number, result) of the latest system call: for SA_RESTART
        self.unknown_reported: set[int] = set()
        # what the guest asked for and vsnap refused ("prctl", "prctl(PR_SET_MM)") -> times:
        # --stats lists it; each key is named once through `notice`
        self.refused: dict[str, int] = {}
        self.strace = None      # a callable(line) when --strace is on
        # vsnap's own lines about the guest (never the guest's stderr): Machine(log=...) and
        # the CLI's --log/--quiet choose where they go (vsnap/diag.py)
        self.notice = lambda line: sys.stderr.write(line + "\n")
        if vfs is not None:  # the sandbox's /dev and /proc come from this kernel's state
            vfs.virtual = VirtualFiles(self)

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

    def guest_inode(self, st: os.stat_result, guest_path: str) -> int:
        """The guest's inode number for a host file: made from the guest path it was first seen
        under, so the same file has the same number in every run and every root (host inode
        numbers differ between roots). Kept per host inode, so hard links agree."""
        key = (st.st_dev, st.st_ino)
        ino = self.inodes.get(key)
        if ino is None:
            digest = hashlib.sha256(os.fsencode(guest_path)).digest()
            ino = 1000 + int.from_bytes(digest[:4], "little") % 0x7FFF_0000
            taken = set(self.inodes.values())
            while ino in taken:
                ino += 1
            self.inodes[key] = ino
        return ino

    def refuse(self, what: str, line: str) -> None:
        """Count a request vsnap does not implement (`what`: a call, or a call and an option),
        and say so once per `what` (a loop of refused calls prints one line, not thousands)."""
        if what not in self.refused:
            self.notice(line)
        self.refused[what] = self.refused.get(what, 0) + 1

    # dispatch ----------------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Serve the system call the guest just made (the syscall hook calls this)."""
        regs = self.cpu.syscall_registers()
        nr = regs[0]
        self.syscall_count += 1
        self.clock.tick()
        self.mem.check_touched(self.syscall_count)  # the budget, before the call is served
        entry = SYSCALLS.get(nr)
        if entry is None:
            result = -E.ENOSYS
            self.unknown_reported.add(nr)
            self.refuse(syscalls.name(nr), f"vsnap: guest called unimplemented syscall {nr} "
                        f"({syscalls.name(nr)})")
            if self.strace:
                self.strace(f"{syscalls.name(nr)}(...) = -1 ENOSYS")
        else:
            args = regs[1:1 + entry.nargs]
            if self.strace:
                result = self._traced(entry, args)
            else:
                try:
                    result = entry.handler(self, *args)
                except SyscallError as e:
                    result = -e.errno
        self._return(nr, result)
        self.last_call = (nr, result)
        self._after_syscall()

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
        if self.host_signals:
            self.take_host_signals()
        if sig.pending and sig.deliverable():
            deliver(self, in_syscall=True)

    def take_host_signals(self) -> None:
        while self.host_signals:
            signo = self.host_signals.popleft()
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
            self.strace(f"{call} = ?")
            raise
        self.strace(f"{call} = {format_result(self, entry, args, result)}")
        return result

"""A Machine is one guest process on its own emulated hardware: CPU, memory, kernel.

    m = Machine("programs/hello", ["hello"], root=".")
    result = m.run()          # RunResult(status=0, ...)

It wires the layers together (cpu, memory, loader, kernel, vfs) and runs the guest until it
exits, faults, or runs out of a budget, and reports what happened the way a shell would.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .abi import signals
from .abi.consts import RLIMIT_STACK
from .cpu import HWCAP, SI_KERNEL, CpuFault
from .crashdump import dying
from .errors import (GuestExit, GuestStopped, KilledBySignal, NothingToWaitFor,
                     StoppedBySignal)
from .fdtable import OpenFile
from .kernel import Console, Process
from .kernel.sigframe import deliver
from .kernel.limits import grow_stack
from .kernel.signal import fire_timers
from .kernel.timers import next_deadline
from .signals import SIG_DFL, SIG_IGN, SigInfo, bit, default_action
from .loader import build_stack, load_segments, read_program
from .memory import MemoryBudgetExceeded
from .trace import disassemble_one
from .system import System
from .proctable import DEFAULT_MAX_PROCESSES
from .sched import (QUANTUM, end_turn, ended, next_event, others_can_run, pick, start_borrow,
                    turn_goes_on, wire)
from .sched import stop as stop_process
from .vfs import Sandbox
from .hardware import new_hardware

DEFAULT_ENV = ("PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/", "LANG=C", "TERM=dumb")
DEFAULT_MAX_MEMORY = 1 << 30
STATUS_MEMORY = signals.status_of("SIGKILL")        # 137, as if the OOM killer struck
STATUS_INSTRUCTIONS = signals.status_of("SIGXCPU")  # 152, as RLIMIT_CPU would


@dataclass
class RunResult:
    status: int                 # what a shell shows in $?: the exit code, or 128 + signal
    signal: str | None = None   # the signal that ended it, if one did
    message: str | None = None  # one line for the user when the guest did not simply exit
    instructions: int | None = None
    syscalls: int = 0
    seconds: float = 0.0
    refused: dict = None        # what the guest asked for and vsnap refused -> times
    peak_memory: int | None = None  # the most guest memory seen touched, in bytes
    virtual_ns: int | None = None   # the guest's monotonic clock at the end (clock.py)


class Machine:
    def __init__(self, program: str, args=(), *, argv0: str | None = None, env=None,
                 root: str = ".", cwd: str | None = None, console: Console | None = None,
                 seed: int = 0, max_memory: int = DEFAULT_MAX_MEMORY, log=None,
                 max_processes: int = DEFAULT_MAX_PROCESSES):
        """Exec `program` with `args`: a new process at its first instruction. `log` says
        where vsnap's notices about the guest go (vsnap/diag.py): stderr by default."""
        self._hardware(program, root, console, seed, max_memory)
        self.system.table.max_processes = max_processes
        self.log = log
        k = self.process
        k.task.cwd = self.vfs.guest_path_of_host(os.path.realpath(cwd or os.getcwd())) or "/"
        for fd, stream in enumerate(("stdin", "stdout", "stderr")):
            k.fds.install(OpenFile("console", f"<{stream}>", 0 if fd == 0 else 1,
                                   stream=stream))
        argv = [argv0 or self.exe or os.path.basename(program), *args]
        envp = list(DEFAULT_ENV) if env is None else list(env)
        load_segments(self.program, self.mem, self.exe or os.path.basename(program))
        sp = build_stack(self.program, self.mem, argv, envp, self.system.random.bytes(16), HWCAP,
                         self.exe or argv[0], k.limits.soft(RLIMIT_STACK), layout=k.exec)
        # rflags as Linux starts a process: interrupts enabled (IF) and the reserved bit 1
        self.cpu.write_many({"rsp": sp, "rip": self.program.base + self.program.entry,
                             "rflags": 0x202})

    @classmethod
    def blank(cls, program: str, *, root: str = ".", console: Console | None = None,
              max_memory: int = DEFAULT_MAX_MEMORY) -> "Machine":
        """Hardware and an empty kernel for `program`, nothing mapped: restore fills it in."""
        m = cls.__new__(cls)
        m._hardware(program, root, console, 0, max_memory)
        return m

    def _hardware(self, program, root, console, seed, max_memory) -> None:
        self.program = read_program(program)
        self.program_path = os.path.realpath(program)
        self.cpu, self.mem = new_hardware(max_memory)
        root_host = os.path.realpath(root)
        if not os.path.isdir(root_host):
            raise GuestStopped(f"vsnap: sandbox root {root} is not a directory; "
                               f"give --root an existing directory", 2)
        self.vfs = Sandbox(root_host, exe_host_path=self.program_path)
        self.exe = self.vfs.exe_guest_path = self.vfs.guest_path_of_host(self.program_path)
        self.system = System(self.vfs, console or Console.host(), seed=seed)
        self.process = Process(self.system, self.cpu, self.mem)
        system = self.system
        system.machine = self
        system.processes[self.process.task.pid] = system.current = system.init = self.process
        self.process.task.exe = self.exe or ""
        self.process.exe_host, self.process.exe_guest = self.program_path, self.exe
        self.process.program = self.program
        system.clock.instructions = system.instructions
        self._log = None
        self.cpu.watch_rdtsc(self.program.rdtsc_candidates())
        wire(self.process)
        self.budget = None  # --max-instructions: over all processes together
        self.result: RunResult | None = None
        self.closed = False
        # called when the CPU was stopped from outside (another thread); may end the run
        self.on_stop = None
        # called with (machine, fault) at a fault that will kill the guest, before it does:
        # --save-on-crash and --core look at the guest here, at the faulting instruction
        self.on_crash = None
        # called with (machine, result) when the first process ended, before the run ends:
        # True when it started a new first process and the run goes on (vsnap/watch.py)
        self.on_init_end = None
        # --core FILE: a process that dumps core also writes its core there (crashdump.py)
        self.core_file: str | None = None

    @property
    def instructions(self) -> int:
        """Instructions executed since exec by every process together, exactly: every run
        counts them."""
        return self.system.instructions()

    @instructions.setter
    def instructions(self, n: int) -> None:
        """The count of a machine with one process (a restore sets it)."""
        if len(self.system.processes) != 1 or self.system.retired:
            raise ValueError("the count of a machine with more than one process is theirs")
        self.cpu.instructions = n

    @property
    def log(self):
        return self._log

    @log.setter
    def log(self, log) -> None:
        """Where vsnap's notices go from now on: None (stderr), False, a list, a callable or
        a file (vsnap/diag.py)."""
        from .diag import sink
        self.system.notice = sink(log)
        self._log = log

    @property
    def running(self) -> bool:
        return self.result is None and not self.closed

    def close(self) -> None:
        """Let go of a guest that will not run again: its host descriptors (open files, ghost
        files) are closed now instead of when Python collects it. Its exit path does not run:
        this is the _exit after Antonov's save, or a process killed once its image is
        written. Running it afterwards is an error."""
        self.closed = True
        self.process.fds.close_all()
        self.mem.close()
        from .kernel.mapmtime import settle
        settle(self.system)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("this machine was closed; restore its image to go on")

    def run(self, *, max_instructions: int | None = None, count: bool = True) -> RunResult:
        """Run until the guest exits, faults or exceeds a budget: `max_instructions` since
        exec. Every run counts instructions exactly (`count` is accepted for the API's
        older callers and changes nothing)."""
        self._check_open()
        self.budget = max_instructions
        self.cpu.over_limit = False
        t0 = time.perf_counter()
        result = self._run_loop()
        result.seconds = time.perf_counter() - t0
        return self._finish(result)

    def advance(self, to: int) -> RunResult | None:
        """Run until exactly `to` instructions have executed since exec; None if the guest is
        still alive there, else how it ended first.

        The counter (counter.py) stops exactly at `to` and keeps the position across the
        stops that come before it (a fault handed to a guest handler, a signal from the
        host, a timer), so `to` is exact whatever happens on the way."""
        self._check_open()
        if to < self.instructions:
            raise ValueError(f"already past instruction {to} (at {self.instructions})")
        self.budget = None
        self.cpu.over_limit = False
        result = self._run_loop(to=to)
        if result is not None:
            return self._finish(result)
        return None

    def _finish(self, result: RunResult) -> RunResult:
        result.syscalls = self.system.syscall_count
        result.instructions = self.system.instructions()
        result.virtual_ns = self.system.clock.monotonic_ns
        try:
            self.mem.check_touched()  # the last look, for the peak
        except MemoryBudgetExceeded:
            pass  # it ended anyway
        result.peak_memory = self.mem.peak_touched
        self.result = result
        result.refused = dict(self.system.refused)
        self.process.fds.close_all()
        self.mem.close()
        from .kernel.mapmtime import settle
        settle(self.system)  # files mapped shared for writing: their mtime as the guest saw it
        return result

    def _run_loop(self, to: int | None = None) -> RunResult | None:
        """Run to an end (a RunResult), or, with `to`, until exactly that many instructions
        have run in all processes together (None). The scheduler (sched.py) picks who runs;
        faults and host signals are handed to the guest here."""
        system = self.system
        try:
            while True:
                if to is not None and self._reached(to):
                    return None
                if system.over_budget is not None:
                    return self._init_ended(system.over_budget)
                p = turn_goes_on(system) or pick(system)
                if p is None:
                    result = self._all_parked()
                    if result is not None:
                        return result
                    continue
                self._switch(p)
                result = self._slice(p, to)
                if result is not None:
                    end_turn(system, p)
                if result is None:
                    continue
                if p is not system.init:
                    ended(system, p, result)
                    continue
                if self.on_init_end is not None and self.on_init_end(self, result):
                    continue  # a new first process runs (vsnap run --watch: watch.py)
                return self._init_ended(result)
        finally:
            self._switch(system.init)

    def _switch(self, p) -> None:
        """p runs now: the machine's cpu, mem and process are p's (a crash, a core file, a
        save and /proc/self all look at them)."""
        if p.borrow_regs is not None:  # a vfork child's first turn on its parent's engine
            start_borrow(p)
        self.system.current = p
        self.cpu, self.mem, self.process = p.cpu, p.mem, p
        self.program, self.program_path, self.exe = p.program, p.exe_host, p.exe_guest

    def _slice(self, k, to: int | None) -> RunResult | None:
        """Run process k for one turn, or on with the turn a stop cut short: to the global
        instruction `to`, the end of its quantum if another process exists, a park or its
        end (a RunResult)."""
        cpu, system = self.cpu, self.system
        offset = system.instructions() - cpu.instructions  # global = offset + k's count
        t = system.turn
        if t is None or t[0] != k.task.pid:
            end = cpu.instructions + QUANTUM if others_can_run(system, k) else None
            system.turn = t = [k.task.pid, end, cpu.instructions]
        stop = None if to is None else to - offset
        if t[1] is not None:
            stop = t[1] if stop is None else min(stop, t[1])
        cpu.budget = None if self.budget is None else self.budget - offset
        try:
            try:
                # a timer that expires at this instruction fires before the next one
                # runs (a save at this instruction comes first: it fires on resume)
                self._timers_due()
                if k.wake_by_signal:  # a signal ends its wait: EINTR, or a restart
                    k.wake_by_signal = False
                    k.interrupt()
                elif k.retrying:  # a parked call runs again: it takes its own signals
                    k.retrying = False
                elif k.signals.pending and k.signals.deliverable():
                    deliver(k, in_syscall=False)  # sent by another process meanwhile
                cpu.run(stop_at=stop)
                if k.cpu is not cpu:  # it exec'd: the turn goes on, on the new engine
                    t = system.turn
                    if t is not None and t[0] == k.task.pid:
                        left = None if t[1] is None else max(0, t[1] - cpu.instructions)
                        system.turn = [t[0], None if left is None else left, 0]
                    k.drop_retired()
                    self._switch(k)
                    return None
                self.mem.check_touched()  # the end of a slice: the budget, as Linux's OOM
                if k.yielded or (t[1] is not None and cpu.instructions >= t[1]):
                    k.yielded = False
                    end_turn(system, k)  # sched_yield, or the quantum is used up
                if k.blocked is not None:
                    end_turn(system, k)
                    result = self._parked(k)
                    if result is not None:
                        return result
            except CpuFault as f:
                if f.address is not None and self.mem.beyond_eof(f.address):
                    # a page of a file mapping past the end of its file
                    f = CpuFault("SIGBUS", f.rip, f.address, "beyond the end of a mapped "
                                 "file", 2)  # BUS_ADRERR
                if f.signal == "SIGSEGV" and f.address is not None \
                        and grow_stack(k, f.address):
                    return None  # a fault below the stack grew it; the access runs again
                if not self._fault_to_handler(f):
                    dying(self, k, f)  # the guest is still whole here: a core, an image
                    return self._fault_result(f)
                return None
            if system.host_signals:  # stopped by a signal from the host: deliver it now
                k.take_host_signals()
                deliver(k, in_syscall=False)
        except GuestExit as e:
            return RunResult(e.status)
        except KilledBySignal as e:
            if default_action(e.signo) == "core":
                # a signal whose default dumps core (abort's SIGABRT, SIGQUIT...): the
                # guest is whole here too, just after the call that raised it
                info = e.info or SigInfo(e.signo)
                dying(self, k, CpuFault(signals.NAMES[e.signo], self.cpu.read("rip"),
                                        info.addr or None, "signal", info.code))
            return self._killed(e.signo)
        except StoppedBySignal as e:
            if len(system.processes) > 1:
                stop_process(system, k, e.signo)  # another process may send SIGCONT
                end_turn(system, k)
                return None
            return self._stopped(e.signo)
        except NothingToWaitFor as e:
            return RunResult(1, None, f"vsnap: the guest {e.what}; stopped it")
        except MemoryBudgetExceeded as e:
            result = RunResult(STATUS_MEMORY, "SIGKILL",
                               f"vsnap: guest stopped: {e}; raise --max-memory")
            if k is system.init:
                return result
            system.over_budget = result  # one budget for all: the whole run stops
            return None
        if cpu.over_limit:
            return RunResult(STATUS_INSTRUCTIONS, "SIGXCPU",
                             f"vsnap: guest stopped after {system.instructions()} "
                             f"instructions: over the budget of {self.budget} "
                             f"(--max-instructions); raise it if the program is not stuck")
        if to is not None and self._reached(to):
            return None
        if self.on_stop is not None:  # stopped from outside (vsnap save): its business
            return self.on_stop(self)
        return None

    def _init_ended(self, result: RunResult) -> RunResult:
        """The first process ended: so does the run, as a container ends with its first
        process. Processes still running are killed (SIGKILL), and the run says so."""
        system = self.system
        left = sorted(pid for pid in system.processes if pid != system.init.task.pid)
        for pid in left:
            q = system.processes[pid]
            ended(system, q, self._killed(9))
        if left:
            pids = ", ".join(map(str, left)) if len(left) <= 6 else \
                f"{', '.join(map(str, left[:3]))}, ..., {left[-1]}"
            line = (f"vsnap: the first process ended; killed {len(left)} process"
                    f"{'es' if len(left) > 1 else ''} still running ({pids})")
            result.message = line if result.message is None else result.message + "\n" + line
        return result

    def _parked(self, k) -> RunResult | None:
        """The process parked in a call (errors.Blocked): go on if the wait is over, or end
        the wait with EINTR if a signal came. With other processes the scheduler decides
        (sched.runnable); alone, nothing could end the wait: the run ends."""
        if k.blocked.ready():
            k.blocked = None
            return None
        if k.sys.host_signals:
            k.take_host_signals()
        if k.signals.pending and k.signals.deliverable():
            k.interrupt()
            return None
        return None  # the scheduler: others run, time skips to a timer, or a deadlock

    def _all_parked(self) -> RunResult | None:
        """No process can run: time skips to the first one's wake-up (as a sleep alone
        skips it, clock.py), or each waits for another: a deadlock."""
        system = self.system
        t = next_event(system)
        if system.net is not None and system.net.waiting():
            from .hostnet import wait_parked  # a host socket may end a wait: wait for it
            wait_parked(system, t)
            if self.on_stop is not None:  # a `vsnap save` may have woken the wait
                return self.on_stop(self)
            return None
        if t is not None:
            clock = system.clock
            clock.monotonic_ns = max(clock.monotonic_ns, t)
            return None
        if len(system.processes) == 1 and system.init.blocked is not None:
            return RunResult(1, None, f"vsnap: the guest waits forever: "
                             f"{system.init.blocked.what}, and no other guest process could "
                             f"end the wait; stopped it")
        waits = "; ".join(f"{pid} {'is stopped' if q.blocked is None else q.blocked.what}"
                          for pid, q in sorted(system.processes.items()))
        return RunResult(1, None, f"vsnap: every guest process waits forever ({waits}): a "
                         f"deadlock; stopped them")

    def _timers_due(self) -> None:
        """Fire the timers whose deadline is the current instruction and hand their signals
        to the guest, as a timer interrupt would between two instructions; then aim the
        counter at the next deadline. A timer fired moves its deadline into the future
        (or disarms), so a second round is a bug, said and not hidden."""
        k, cpu = self.process, self.cpu
        offset = self.system.instructions() - cpu.instructions
        for _ in range(2):
            deadline = next_deadline(k)
            cpu.set_deadline(None if deadline is None else deadline - offset)
            if deadline is None or deadline > cpu.instructions + offset:
                return
            fire_timers(k)
            deliver(k, in_syscall=False)
        raise RuntimeError(f"vsnap: a timer stays due at instruction {cpu.instructions}; "
                           f"please report this with the program")

    def _reached(self, to: int) -> bool:
        """Has the count reached `to`? Past it would be a counting bug: said, never hidden."""
        n = self.system.instructions()
        if n > to:
            raise RuntimeError(f"vsnap: the instruction counter ran past {to} to {n}; "
                               f"please report this with the program")
        return n == to

    def _fault_to_handler(self, f: CpuFault) -> bool:
        """Hand a fault to the guest's handler as Linux would (SIGSEGV with si_addr...);
        False when the signal is blocked, ignored or default: then it kills (force_sig)."""
        sig = self.process.signals
        signo = signals.NUMBERS[f.signal]
        act = sig.action(signo)
        if act.handler in (SIG_DFL, SIG_IGN) or sig.blocked & bit(signo):
            return False
        addr = f.address if f.address is not None else f.rip
        if f.code == SI_KERNEL and f.address is None:
            addr = 0  # a general-protection fault or int3: force_sig gives no address
        sig.pending.insert(0, SigInfo(signo, f.code, addr=addr))
        deliver(self.process, in_syscall=False)
        return True

    def _killed(self, signo: int) -> RunResult:
        name = signals.NAMES.get(signo, f"signal {signo}")
        what = signals.DESCRIPTIONS.get(name, name)
        return RunResult(128 + signo, name, f"vsnap: guest killed by {name} ({what})")

    def _stopped(self, signo: int) -> RunResult | None:
        """A stop signal: wait, as a stopped process does, until the host sends SIGCONT."""
        name = signals.NAMES.get(signo, str(signo))
        k = self.system
        while True:
            if not k.wait_for_host_signal():
                return RunResult(128 + signo, name, f"vsnap: guest stopped by {name}, and "
                                 f"nothing can send it SIGCONT here; ended it")
            if 18 in k.host_signals:  # SIGCONT
                return None

    def _fault_result(self, f: CpuFault) -> RunResult:
        try:
            code = self.mem.read(f.rip, 16)
            insn = disassemble_one(code, f.rip)
        except Exception:  # the fault may be a fetch from unmapped memory
            insn = "<not mapped>"
        what = signals.DESCRIPTIONS.get(f.signal, f.signal)
        where = f" at {f.address:#x}" if f.address is not None else ""
        message = f"vsnap: {what}{where} (rip={f.rip:#x}: {insn})"
        return RunResult(signals.status_of(f.signal), f.signal, message)

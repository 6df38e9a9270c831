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
from .cpu import HWCAP, Cpu, CpuFault
from .errors import GuestStopped
from .fdtable import OpenFile
from .kernel import Console, GuestExit, Kernel
from .loader import build_stack, load_segments, read_program
from .memory import AddressSpace, MemoryBudgetExceeded, UnicornMemory
from .trace import disassemble_one
from .vfs import Sandbox

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


class Machine:
    def __init__(self, program: str, args=(), *, argv0: str | None = None, env=None,
                 root: str = ".", cwd: str | None = None, console: Console | None = None,
                 seed: int = 0, max_memory: int = DEFAULT_MAX_MEMORY):
        """Exec `program` with `args`: a new process at its first instruction."""
        self._hardware(program, root, console, seed, max_memory)
        k = self.kernel
        k.proc.cwd = self.vfs.guest_path_of_host(os.path.realpath(cwd or os.getcwd())) or "/"
        for fd, stream in enumerate(("stdin", "stdout", "stderr")):
            k.fds.install(OpenFile("console", f"<{stream}>", 0 if fd == 0 else 1,
                                   stream=stream))
        argv = [argv0 or self.exe or os.path.basename(program), *args]
        envp = list(DEFAULT_ENV) if env is None else list(env)
        load_segments(self.program, self.mem, self.exe or os.path.basename(program))
        sp = build_stack(self.program, self.mem, argv, envp, k.random.bytes(16), HWCAP,
                         self.exe or argv[0])
        self.cpu.write_many({"rsp": sp, "rip": self.program.base + self.program.entry})
        self.instructions = 0  # executed so far, while it is known exactly

    @classmethod
    def blank(cls, program: str, *, root: str = ".", console: Console | None = None,
              max_memory: int = DEFAULT_MAX_MEMORY) -> "Machine":
        """Hardware and an empty kernel for `program`, nothing mapped: restore fills it in."""
        m = cls.__new__(cls)
        m._hardware(program, root, console, 0, max_memory)
        m.instructions = None
        return m

    def _hardware(self, program, root, console, seed, max_memory) -> None:
        self.program = read_program(program)
        self.program_path = os.path.realpath(program)
        self.cpu = Cpu()
        self.mem = AddressSpace(UnicornMemory(self.cpu.uc), limit=max_memory)
        root_host = os.path.realpath(root)
        if not os.path.isdir(root_host):
            raise GuestStopped(f"vsnap: sandbox root {root} is not a directory; "
                               f"give --root an existing directory", 2)
        self.exe = Sandbox(root_host).guest_path_of_host(self.program_path)
        self.vfs = Sandbox(root_host, exe_guest_path=self.exe)
        self.kernel = Kernel(self.cpu, self.mem, self.vfs, console or Console.host(), seed=seed)
        self.kernel.proc.exe = self.exe or ""
        self.cpu.tsc = self.kernel.clock.tsc
        self.cpu.watch_rdtsc(self.program.rdtsc_candidates())
        self.cpu.on_syscall(self.kernel.dispatch)
        self.result: RunResult | None = None
        # called when the CPU was stopped from outside (another thread); may end the run
        self.on_stop = None

    @property
    def running(self) -> bool:
        return self.result is None

    def run(self, *, max_instructions: int | None = None, count: bool = False) -> RunResult:
        """Run until the guest exits, faults or exceeds a budget. `count` counts instructions
        exactly (slower); a budget implies counting."""
        counting = count or max_instructions is not None
        if counting:
            self.cpu.start_counting(max_instructions)
        self.instructions = None  # a free run does not know where it is
        t0 = time.perf_counter()
        result = self._run_loop()
        result.seconds = time.perf_counter() - t0
        result.syscalls = self.kernel.syscall_count
        if counting:
            result.instructions = self.cpu.instructions
        return self._finish(result)

    def advance(self, to: int) -> RunResult | None:
        """Run until exactly `to` instructions have executed since exec; None if the guest is
        still alive there, else how it ended first. Uses Unicorn's exact instruction count."""
        if self.instructions is None:
            raise ValueError("the instruction count is unknown after a save from a free run")
        if to < self.instructions:
            raise ValueError(f"already past instruction {to} (at {self.instructions})")
        while self.instructions < to:
            result = self._run_loop(count=to - self.instructions)
            if result is not None:
                self.instructions = None
                result.syscalls = self.kernel.syscall_count
                return self._finish(result)
            self.instructions = to
        return None

    def _finish(self, result: RunResult) -> RunResult:
        self.result = result
        self.kernel.fds.close_all()
        return result

    def _run_loop(self, count: int = 0) -> RunResult | None:
        """Run to an end (a RunResult), or, with `count`, until that many instructions have
        run (None)."""
        cpu = self.cpu
        while True:
            try:
                cpu.run(count)
            except GuestExit as e:
                return RunResult(e.status)
            except CpuFault as f:
                if getattr(cpu, "instructions", None) is not None:
                    cpu.uncount_partial_block()
                return self._fault_result(f)
            except MemoryBudgetExceeded as e:
                return RunResult(STATUS_MEMORY, "SIGKILL",
                                 f"vsnap: guest stopped: {e}; raise --max-memory")
            if getattr(cpu, "over_limit", False):
                return RunResult(STATUS_INSTRUCTIONS, "SIGXCPU",
                                 f"vsnap: guest stopped after {cpu.instructions} instructions: "
                                 f"over the budget of {cpu.limit} (--max-instructions); "
                                 f"raise it if the program is not stuck")
            if count:
                return None
            if self.on_stop is not None:  # stopped from outside (vsnap save): its business
                result = self.on_stop(self)
                if result is not None:
                    return result

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

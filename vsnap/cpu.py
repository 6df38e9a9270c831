"""The CPU: one Unicorn x86-64 engine, registers by name, and the hooks vsnap needs.

Only the CPU layer (this module and its helpers: registers.py, counter.py, tlb.py,
nativehooks.py, userring.py, doublefault.py, and memory.py's Unicorn backend) imports unicorn.
Everything above talks about registers by their Linux names ("rax", "rip", "fs_base", "mxcsr", "xmm0") and never sees a
Unicorn constant.
"""
from __future__ import annotations

import ctypes
from typing import Callable

import unicorn as U
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib as _uclib

from .hostpages import small_pages
# GPRS and REGISTERS are imported from here by the snapshot and the tests
from .registers import _IDS, _WIDE, GPRS, REGISTERS, SYSCALL_ARGS, register_file  # noqa: F401
from .tlb import PageBook, install as install_tlb

# Linux starts a process with these (fninit and the kernel's default MXCSR); Unicorn starts
# with 0 in both, which makes musl's printf round floats wrongly.
LINUX_FPCW = 0x037F
LINUX_MXCSR = 0x1F80

# CPUID: a fixed, modest x86-64 CPU (SSE up to SSE4.2, no AVX: Unicorn cannot run AVX and glibc
# picks its string routines from these bits). Fixed so that a run is the same on every host.
_VENDOR = (0x756E6547, 0x6C65746E, 0x49656E69)  # "GenuineIntel" as ebx, ecx, edx
CPUID_LEAVES = {
    0x0: (0x7, *_VENDOR),
    # ecx: SSE3, SSSE3, CX16, SSE4.1, SSE4.2, POPCNT; no OSXSAVE (27), no AVX (28).
    0x1: (0x000306A9, 0x00000800, 0x00982201, 0x078BFBFF),
    0x7: (0, 0, 0, 0),
    0x80000000: (0x80000008, 0, 0, 0),
    0x80000001: (0, 0, 0x00000001, 0x28100800),
    0x80000008: (0x00003030, 0, 0, 0),
}
HWCAP = CPUID_LEAVES[0x1][3]  # AT_HWCAP is leaf 1's edx on x86-64

# Faults Unicorn reports, named as the signal Linux would send.
FAULTS = {
    U.UC_ERR_READ_UNMAPPED: "SIGSEGV", U.UC_ERR_WRITE_UNMAPPED: "SIGSEGV",
    U.UC_ERR_FETCH_UNMAPPED: "SIGSEGV", U.UC_ERR_READ_PROT: "SIGSEGV",
    U.UC_ERR_WRITE_PROT: "SIGSEGV", U.UC_ERR_FETCH_PROT: "SIGSEGV",
    U.UC_ERR_READ_UNALIGNED: "SIGBUS", U.UC_ERR_WRITE_UNALIGNED: "SIGBUS",
    U.UC_ERR_FETCH_UNALIGNED: "SIGBUS", U.UC_ERR_INSN_INVALID: "SIGILL",
}
_PROT_ERRORS = {U.UC_ERR_READ_PROT, U.UC_ERR_WRITE_PROT, U.UC_ERR_FETCH_PROT}
_ADDRESS_ERRORS = _PROT_ERRORS | {U.UC_ERR_READ_UNMAPPED, U.UC_ERR_WRITE_UNMAPPED,
                                  U.UC_ERR_FETCH_UNMAPPED}
# The TLB-fill hook: the PROT_* bit an access needs, and PROT_* bits as Unicorn's.
_NEED = {U.UC_MEM_READ: 1, U.UC_MEM_WRITE: 2, U.UC_MEM_FETCH: 4}
_UC_PERMS = [(U.UC_PROT_READ if p & 1 else 0) | (U.UC_PROT_WRITE if p & 2 else 0)
             | (U.UC_PROT_EXEC if p & 4 else 0) for p in range(8)]
_PAGE_MASK = ~0xFFF & 0xFFFF_FFFF_FFFF_FFFF
# CPU exceptions that reach the interrupt hook: vector -> (signal, si_code), as Linux's
# arch/x86/kernel/traps.c sends them. SI_KERNEL ones carry no address (force_sig): int3, a
# general-protection fault (a privileged instruction, a non-canonical address), and `int n`,
# which a user program may not use (the IDT gate is kernel-only: #GP).
SI_KERNEL = 0x80
VECTORS = {0: ("SIGFPE", 1), 1: ("SIGTRAP", 1), 3: ("SIGTRAP", SI_KERNEL), 4: ("SIGSEGV", 1),
           5: ("SIGSEGV", 1), 6: ("SIGILL", 2), 13: ("SIGSEGV", SI_KERNEL),
           14: ("SIGSEGV", 1), 16: ("SIGFPE", 1), 17: ("SIGBUS", 1), 19: ("SIGFPE", 1)}
INT_N = ("SIGSEGV", SI_KERNEL)
# exceptions raised after their instruction completed (rip is past it): int1, int3, into,
# and every vector above the CPU's own 32, which only `int n` raises. The count leaves the
# instruction out all the same, as for faults (counter.py).
def _is_trap(vector: int) -> bool:
    return vector in (1, 3, 4) or vector >= 32


class CpuFault(Exception):
    """The guest faulted: `signal` is the Linux signal name, `address` the bad address if any."""

    def __init__(self, signal: str, rip: int, address: int | None, detail: str, code: int = 1):
        super().__init__(detail)
        self.signal, self.rip, self.address, self.detail = signal, rip, address, detail
        self.code = code  # si_code: SEGV_MAPERR 1 / SEGV_ACCERR 2, ILL_ILLOPN 2, FPE_INTDIV 1


class Cpu:
    """A Unicorn x86-64 engine set up the way Linux sets up a new process."""

    def __init__(self):
        with small_pages():  # the engine starts at its first register write (hostpages.py)
            self.uc = U.Uc(U.UC_ARCH_X86, U.UC_MODE_64)
            self.uc.reg_write(X.UC_X86_REG_FPCW, LINUX_FPCW)
        self.uc.reg_write(X.UC_X86_REG_MXCSR, LINUX_MXCSR)
        # OSFXSR and OSXMMEXCPT: SSE instructions and SSE exceptions enabled, as Linux does.
        self.uc.reg_write(X.UC_X86_REG_CR4, self.uc.reg_read(X.UC_X86_REG_CR4) | 0x600)
        # a user process: privileged instructions fault (userring.py); False on a Unicorn
        # where that could not be done (then only hlt faults: _halted)
        from .userring import enter_ring3
        self.ring3 = enter_ring3(self.uc)
        self._port_io: tuple[int, int] | None = None
        for insn in (X.UC_X86_INS_IN, X.UC_X86_INS_OUT):
            self.uc.hook_add(U.UC_HOOK_INSN, self._on_port_io, None, 1, 0, insn)
        self._bad_access: tuple[int, int, int] | None = None
        # called with (address, size) when a write hits a page without write permission;
        # True when it gave the permission (a copy-on-write page): the write goes ahead
        self.on_write_fault: Callable[[int, int], bool] | None = None
        # called with an address nothing is mapped at; True when it mapped it (a
        # MAP_GROWSDOWN mapping grew)
        self.on_unmapped: Callable[[int], bool] | None = None
        self._vector: int | None = None
        self.uc.hook_add(U.UC_HOOK_INSN, self._on_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
        # No memory hook stays installed: while any UC_HOOK_MEM_* hook covers a page, Unicorn
        # never marks its TLB entry dirty, and every store to it takes the slow path (two
        # region lookups per store: bash ran 3x slower). Fault addresses: _denied and
        # faultaddr.py, or _fault_address.
        # Page permissions come from vsnap's books (guestram keeps `pages`), read on each TLB
        # miss by a C hook (tlb.py); what the books do not allow comes to _on_tlb_fill, which
        # asks page_prot(address) -> PROT_* bits, or None where nothing is mapped
        self.page_prot: Callable[[int], int | None] = lambda address: None
        self._denied: tuple[int, int, bool] | None = None  # (access, address, mapped)
        self.pages = PageBook()
        self._tlb_hook = install_tlb(self.uc, self.pages, self._on_tlb_fill)
        self.uc.hook_add(U.UC_HOOK_INTR, self._on_interrupt)
        self._fast_paths()
        self.budget: int | None = None
        self.deadline: int | None = None  # the next timer's expiry, as an instruction count
        self._stop_at: int | None = None
        self.over_limit = False
        self.tsc: Callable[[], int] = lambda: 0
        # may the counter keep a block's count: False where the guest can write the code
        # (set by the machine, which knows the mappings)
        self.code_cacheable: Callable[[int, int], bool] = lambda address, size: False
        self._rdtsc_hooks: dict[int, int] = {}
        # every run counts (the guest's clock follows the count): counter.py
        from .counter import make_counter
        self.counter = make_counter(self.uc, lambda a, size: self.code_cacheable(a, size))

    # registers -------------------------------------------------------------------------
    def _fast_paths(self) -> None:
        """System call entry and exit through Unicorn's C API directly.

        The binding's reg_read_batch picks a Python class per register and costs about 20 us
        for seven registers; one ctypes call into uc_reg_read_batch with arrays made once
        costs about 1 us. The syscall path runs hundreds of thousands of times a second.
        """
        names = (*SYSCALL_ARGS, "rip", "rflags")
        n = len(names)
        self._sc_ids = (ctypes.c_int * n)(*(_IDS[r] for r in names))
        self._sc_vals = (ctypes.c_uint64 * n)()
        base = ctypes.addressof(self._sc_vals)
        self._sc_ptrs = (ctypes.c_void_p * n)(*(base + 8 * i for i in range(n)))
        # the way back: rax, and rcx and r11, which the syscall instruction itself sets to
        # the return address and rflags on a real CPU (Unicorn's hook leaves them alone)
        self._ret_ids = (ctypes.c_int * 3)(_IDS["rax"], _IDS["rcx"], _IDS["r11"])
        self._ret_vals = (ctypes.c_uint64 * 3)()
        base = ctypes.addressof(self._ret_vals)
        self._ret_ptrs = (ctypes.c_void_p * 3)(*(base + 8 * i for i in range(3)))
        self._rax_val = ctypes.c_uint64()
        self._rax_ptr = ctypes.byref(self._rax_val)
        self._one = ctypes.c_uint64()  # read() and write() of one register
        self._one_ptr = ctypes.byref(self._one)
        self._uch = self.uc._uch

    def syscall_registers(self) -> tuple:
        """(rax, rdi, rsi, rdx, r10, r8, r9): the number and the six arguments."""
        _uclib.uc_reg_read_batch(self._uch, self._sc_ids, self._sc_ptrs, 9)
        return tuple(self._sc_vals[:7])

    def syscall_return(self, value: int) -> None:
        """rax = the result; rcx = the address after `syscall`, r11 = rflags, as the
        instruction leaves them on x86-64 (read at entry by syscall_registers)."""
        vals = self._ret_vals
        vals[0], vals[1], vals[2] = value, self._sc_vals[7] + 2, self._sc_vals[8]
        _uclib.uc_reg_write_batch(self._uch, self._ret_ids, self._ret_ptrs, 3)

    def syscall_site(self) -> tuple[int, int]:
        """(number, address) of the system call being served: which call this is."""
        return self._sc_vals[0], self._sc_vals[7]

    def rewind_syscall(self) -> None:
        """Back to the `syscall` instruction being served, as if it had not run: rip on it
        (rax still holds the number), one instruction fewer counted, and stop there. From
        the syscall hook: Unicorn adds the instruction's 2 bytes to rip after it."""
        self.write("rip", self._sc_vals[7] - 2)
        self.counter.count -= 1
        self.stop()

    def set_rax(self, value: int) -> None:
        self._rax_val.value = value
        _uclib.uc_reg_write(self._uch, X.UC_X86_REG_RAX, self._rax_ptr)

    def read(self, name: str) -> int:
        if name in _WIDE:  # x87 and xmm: the binding's types
            return self.uc.reg_read(_IDS[name])
        one = self._one
        one.value = 0  # a narrower register (fpcw...) fills only its low bytes
        err = _uclib.uc_reg_read(self._uch, _IDS[name], self._one_ptr)
        if err:
            raise U.UcError(err)
        return one.value

    def write(self, name: str, value: int) -> None:
        if name in _WIDE:
            self.uc.reg_write(_IDS[name], value)
            return
        self._one.value = value & 0xFFFF_FFFF_FFFF_FFFF  # wrapped, as ctypes wraps it
        err = _uclib.uc_reg_write(self._uch, _IDS[name], self._one_ptr)
        if err:
            raise U.UcError(err)

    def read_many(self, names) -> tuple:
        return self.uc.reg_read_batch([_IDS[n] for n in names])

    def write_many(self, pairs: dict) -> None:
        register_file(tuple(pairs)).write(self._uch, pairs)

    def snapshot_registers(self) -> dict:
        """Every register by name: GPRs, rip, rflags, fs/gs base, x87, SSE, mxcsr. An fp(i)
        is its 64-bit mantissa with the sign and exponent above it; an xmm(i), 128 bits."""
        return register_file(REGISTERS).read(self._uch)

    def restore_registers(self, regs: dict) -> None:
        """Write these registers (all of them, or some), values as snapshot_registers
        gives them."""
        register_file(tuple(regs)).write(self._uch, regs)

    # hooks -------------------------------------------------------------------------------
    def on_syscall(self, callback: Callable[[], None]) -> None:
        """Call `callback()` at each `syscall`; rip then points at the instruction. One
        callback at a time: a vfork child borrowing this engine takes it over."""
        if getattr(self, "_syscall_hook", None) is not None:
            self.uc.hook_del(self._syscall_hook)
        self._syscall_hook = self.uc.hook_add(U.UC_HOOK_INSN, lambda uc, ud: callback(),
                                              None, 1, 0, X.UC_X86_INS_SYSCALL)

    def _on_cpuid(self, uc, _ud) -> int:
        leaf = uc.reg_read(X.UC_X86_REG_EAX) & 0xFFFFFFFF
        eax, ebx, ecx, edx = CPUID_LEAVES.get(leaf, (0, 0, 0, 0))
        uc.reg_write_batch([(X.UC_X86_REG_RAX, eax), (X.UC_X86_REG_RBX, ebx),
                            (X.UC_X86_REG_RCX, ecx), (X.UC_X86_REG_RDX, edx)])
        return 1  # handled: Unicorn must not run its own cpuid

    def watch_rdtsc(self, addresses) -> None:
        """Serve `rdtsc` at these addresses from the virtual clock.

        Unicorn cannot hook rdtsc by instruction, and its own rdtsc reads the host's clock,
        which would make runs differ. The loader finds the candidate addresses (the bytes
        0f 31 in executable segments); a one-instruction code hook at each costs nothing
        elsewhere, and fires only where an instruction really starts.
        """
        for addr in addresses:
            if addr not in self._rdtsc_hooks:
                self._rdtsc_hooks[addr] = self.uc.hook_add(U.UC_HOOK_CODE, self._on_rdtsc,
                                                           None, addr, addr)

    def _on_rdtsc(self, uc, address, size, _ud) -> None:
        if size != 2 or bytes(uc.mem_read(address, 2)) != b"\x0f\x31":
            return
        self.counter.cut(address + 2)  # the rest of this block runs as a new one
        t = self.tsc()
        uc.reg_write_batch([(X.UC_X86_REG_RAX, t & 0xFFFFFFFF), (X.UC_X86_REG_RDX, t >> 32)])
        # alone: Unicorn treats a hook's write of rip as a jump only through reg_write (a
        # batch write leaves the hook firing at the same address forever)
        uc.reg_write(X.UC_X86_REG_RIP, address + 2)

    def _fault_address(self, rip: int) -> int | None:
        """The address the faulting instruction at rip could not reach, for a fault the
        TLB-fill hook did not refuse (Unicorn's own): that one instruction again, with a
        memory hook installed only now (see __init__). Same registers and memory, so the same
        fault; were it not to fault, its effect on the registers is taken back. Instruction
        counts stay as they were; the TLB is flushed before and after, so that the rerun
        and what follows see the books as they are."""
        self._flush_tlb()
        c = self.counter
        count = c.count
        c.arm(None)  # the next cpu.run arms it again
        ctx = self.uc.context_save()
        self._bad_access = None
        hook = self.uc.hook_add(U.UC_HOOK_MEM_INVALID, self._on_bad_access)
        try:
            self.uc.emu_start(rip, 0xFFFF_FFFF_FFFF_FFFF, count=1)
            self.uc.context_restore(ctx)
        except U.UcError:
            pass
        finally:
            self.uc.hook_del(hook)
            self._flush_tlb()
            self._vector = self._denied = None
            c.count = count
        return self._bad_access[1] if self._bad_access else None

    def _flush_tlb(self) -> None:
        self.uc.ctl(U.UC_CTL_TLB_FLUSH, U.UC_CTL_IO_WRITE)

    def _on_bad_access(self, uc, access, address, size, value, _ud) -> bool:
        self._bad_access = (access, address, size)
        return False  # not handled: Unicorn stops with a fault

    def _on_tlb_fill(self, uc, address, access, entry) -> bool:
        """Unicorn misses a page in its TLB and the books do not allow the access (tlb.py
        answers the rest): a MAP_GROWSDOWN mapping may grow, a copy-on-write page become
        the process's own; then give the page's permission (physical address = virtual), or
        refuse, and the access faults (Cpu.run turns it into SIGSEGV or SIGBUS)."""
        need = _NEED[access]
        prot = self.page_prot(address)
        if prot is None and self.on_unmapped and self.on_unmapped(address):
            prot = self.page_prot(address)  # a MAP_GROWSDOWN mapping grew down to it
        if (prot is not None and need == 2 and not prot & 2 and self.on_write_fault
                and self.on_write_fault(address, 1)):
            prot = self.page_prot(address)  # a copy-on-write page, writable now
        if prot is None or not prot & need:
            self._denied = (access, address, prot is not None)
            return False
        entry.paddr = address & _PAGE_MASK
        entry.perms = _UC_PERMS[prot & 7]
        return True

    def _exact(self, rip: int, page: int) -> int:
        """The address in `page` the instruction at rip touched (faultaddr.py)."""
        from .faultaddr import fault_address
        try:
            code = bytes(self.uc.mem_read(rip, 16))
        except U.UcError:
            return page
        return fault_address(code, rip, page, self.read)

    def _on_port_io(self, uc, port, *_args) -> int:
        """in/out/ins/outs: Linux faults them (IOPL 0, no I/O bitmap), but Unicorn skips the
        check, and the rest of this translated block would run before a stop, so the fault
        cannot be made exact (userring.py): the run stops and says so. rip is on the
        instruction (Unicorn syncs it before the hook)."""
        if self._port_io is None:
            self._port_io = (uc.reg_read(X.UC_X86_REG_RIP), port)
        self.counter.request_stop()
        uc.emu_stop()
        return 0  # what an `in` reads

    def _on_interrupt(self, uc, vector, _ud) -> None:
        self._vector = vector
        self.counter.request_stop()  # the next block must not be counted
        uc.emu_stop()

    # running -----------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> None:
        """Run from rip until a hook stops the engine; raise CpuFault on a fault.

        The counter stops exactly at the first of: `stop_at` instructions, the budget (a
        runaway guest: over_limit), the timer deadline (set_deadline). It stops before the
        block that would cross the limit, and that block's tail then runs with a
        per-instruction hook on it alone (counter.py)."""
        self._bad_access = self._vector = None
        c = self.counter
        self._stop_at = stop_at
        self._arm()
        c.clear_stop()
        fault = self._emulate(c)
        if fault is None and c.tail_pending():
            span = c.tail()
            try:
                fault = self._emulate(c)
            finally:
                c.end_tail(span)
        if c.error is not None:
            error, c.error = c.error, None
            raise error
        if fault is not None:
            raise fault
        if self.budget is not None and (stop_at is None or c.count < stop_at):
            self.over_limit = c.count >= self.budget

    def end_turn_within(self, n: int) -> None:
        """Stop within n more instructions, also while running (a fork mid-turn: the
        scheduler's quantum applies from now on)."""
        limit = self.counter.count + n
        if self._stop_at is None or limit < self._stop_at:
            self._stop_at = limit
            self._arm()

    def _arm(self) -> None:
        limits = [x for x in (self._stop_at, self.budget, self.deadline) if x is not None]
        self.counter.arm(min(limits) if limits else None)

    def set_deadline(self, deadline: int | None) -> None:
        """Stop when the count reaches `deadline` (a timer's expiry, as an instruction
        count), also while running: the kernel moves it at system calls."""
        if deadline != self.deadline:
            self.deadline = deadline
            self._arm()

    def _emulate(self, c) -> CpuFault | None:
        """One emu_start from rip; a fault comes back (the count already corrected)."""
        self._denied = None
        try:
            self.uc.emu_start(self.read("rip"), 0xFFFF_FFFF_FFFF_FFFF)
        except U.UcError as e:
            raised = getattr(self.uc, "_hook_exception", None)
            if raised is not None:  # a hook raised, then Unicorn failed (the TLB fill
                raise raised        # refused): the binding would lose the exception
            rip = self.read("rip")
            c.fault(rip)
            if e.errno == U.UC_ERR_EXCEPTION and self._denied is not None:
                # the TLB-fill hook refused the page: unmapped (SEGV_MAPERR) or not
                # allowed (SEGV_ACCERR)
                access, page, mapped = self._denied
                addr = self._exact(rip, page) if access != U.UC_MEM_FETCH else rip
                what = {U.UC_MEM_READ: "read", U.UC_MEM_WRITE: "write"}.get(access, "fetch")
                return CpuFault("SIGSEGV", rip, addr,
                                f"{what} of {'protected' if mapped else 'unmapped'} memory "
                                f"at {addr:#x}", 2 if mapped else 1)
            signal = FAULTS.get(e.errno)
            if signal is None:
                return CpuFault("SIGSEGV", rip, None, str(e))
            addr = self._fault_address(rip) if e.errno in _ADDRESS_ERRORS else None
            code = 2 if e.errno in _PROT_ERRORS or signal == "SIGILL" else 1
            return CpuFault(signal, rip, addr, str(e), code)
        if self._port_io is not None:
            (rip, port), self._port_io = self._port_io, None
            from .errors import GuestStopped
            raise GuestStopped(f"vsnap: the guest used port I/O (port {port:#x}, at {rip:#x}), "
                               f"which Linux answers with SIGSEGV and vsnap cannot fault "
                               f"exactly; the run is stopped", 1)
        if self._vector is not None:
            vector, self._vector = self._vector, None
            if vector == 8:  # cannot come from a user program: see doublefault.py
                from .doublefault import double_fault_message
                raise RuntimeError(double_fault_message())
            signal, code = VECTORS.get(vector, INT_N)
            rip = self.read("rip")
            c.fault(rip, trap=_is_trap(vector))
            from .doublefault import exception_delivered
            exception_delivered(self.uc)  # the next exception is raised afresh
            return CpuFault(signal, rip, None, self._exception_detail(vector, rip), code)
        if c.stopped_for_no_reason():
            return self._halted(c)
        return None

    def _exception_detail(self, vector: int, rip: int) -> str:
        if vector != 13:
            return f"CPU exception {vector}"
        from .trace import disassemble_one  # a general-protection fault: name the instruction
        try:  # up to 16 bytes, not past the page (the next one may not be there)
            insn = disassemble_one(bytes(self.uc.mem_read(rip, min(16, -rip & 0xFFF or 16))),
                                   rip)
        except U.UcError:
            insn = "?"
        return f"general-protection fault ({insn})"

    def _halted(self, c) -> CpuFault | None:
        """emu_start came back though nothing stopped it: where vsnap could not put the guest
        in ring 3 (userring.py), Unicorn runs it in ring 0, where `hlt` halts the CPU and ends
        the run with rip past it. In a user process `hlt` is a privileged instruction: a
        general-protection fault, SIGSEGV (glibc's abort() and musl's a_crash() end with it).
        The halt is taken back: rip on the hlt, which is not counted. None if the byte before
        rip is not a hlt (said, never guessed at)."""
        rip = self.read("rip") - 1
        if bytes(self.uc.mem_read(rip, 1)) != b"\xf4":
            raise RuntimeError(f"vsnap: the CPU stopped at {rip + 1:#x} for no reason vsnap "
                               f"knows; please report this with the program")
        self.write("rip", rip)
        c.fault(rip)
        return CpuFault("SIGSEGV", rip, None, "privileged instruction (hlt)", SI_KERNEL)

    def stop(self) -> None:
        """Stop the engine (from a hook, a signal handler or another thread), before the
        next block, so the count stays exact."""
        self.counter.request_stop()

    # counting ----------------------------------------------------------------------------
    @property
    def instructions(self) -> int:
        """Instructions executed since exec, exactly (counter.py)."""
        return self.counter.count

    @instructions.setter
    def instructions(self, n: int) -> None:
        self.counter.count = n

    def use_known_blocks(self, known) -> None:
        """Start the counter's table with the counts other machines learned for the same
        text (knownblocks.py), before any code is loaded."""
        self.counter.use_known(known)

    def set_budget(self, limit: int | None) -> None:
        """Stop past `limit` instructions since exec (--max-instructions): over_limit."""
        self.budget = limit
        self.over_limit = False

    def code_changed(self, start: int, end: int) -> None:
        """Executable memory in [start, end) was mapped, unmapped, reprotected or written by
        vsnap: code translated from it and counts kept per block may be stale. Unicorn keeps
        running its old translation of a page the guest rewrote between two mprotect calls
        (tests/guests/selfmod.c showed it), so its translations of the range go too."""
        # one call per engine region: Unicorn finds the first page's RAM and invalidates a
        # contiguous stretch of RAM from there, and each of vsnap's chunks is its own RAM
        for first, last, perms in self.uc.mem_regions():
            lo, hi = max(start, first), min(end, last + 1)
            if lo < hi and perms & U.UC_PROT_EXEC:
                self.uc.ctl_remove_cache(lo, hi)
        self.counter.code_changed()

    def trace_instructions(self, n: int, emit: Callable[[int, bytes], None]) -> None:
        """Call emit(address, bytes) for each of the next `n` instructions."""
        left = [n]

        def on_code(uc, address, size, _ud):
            if left[0] > 0:
                left[0] -= 1
                emit(address, bytes(uc.mem_read(address, size)))
            elif self._trace_hook is not None:
                uc.hook_del(self._trace_hook)
                self._trace_hook = None

        self._trace_hook = self.uc.hook_add(U.UC_HOOK_CODE, on_code)

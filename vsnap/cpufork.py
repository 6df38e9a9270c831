"""fork's hardware: a new engine in the state of a running one, and its memory beside it.

    child_cpu, child_mem = fork_hardware(parent_cpu, parent_mem)   # in the fork handler
    return_from_syscall(child_cpu, 0)        # the child's fork() returns 0 when it runs

The child's CPU state is the parent's whole CPU state, not only the registers vsnap names:
Unicorn's context (uc_context_save: QEMU's CPUX86State up to its reset fields, which holds
every general register, rip, the lazily computed flags, segment bases, x87, SSE, mxcsr,
control registers, EFER, and the privilege level userring.py set and the exception state
doublefault.py resets) is copied from the parent's engine into the child's with one
context_save and one context_restore. Unicorn's Python binding makes its contexts picklable for
this use (restoring a context saved from another engine of the same architecture).
Copying registers by name (registers.REGISTERS) would leave out what Linux also keeps across
fork and vsnap has no name for (the x87 last-instruction pointers, CR0/CR4 and EFER bits),
so the context is copied and tests/test_memfork.py checks every named register too.

What the child engine does not take from the parent, because it is not the CPU's:
the syscall hook (the lead's kernel wires it: Cpu.on_syscall), the clock (`tsc`), timer
deadline and budget (Linux does not inherit itimers across fork; the scheduler sets budgets),
and the instruction count, which is per process here and starts at the parent's (the caller
may set `cpu.instructions` as its counting wants). The rdtsc watch points and the counter's
known blocks for the text (knownblocks.py) come along.

A new engine (Unicorn's uc_open plus ring 3, vsnap's hooks, TLB book and counter) costs about
0.4 ms, about 1.2 ms each when 40 are made in a row, and keeps about 1.6 MiB of host memory
resident while it lives (`benchmarks/fork.py` prints both): a fork bomb of N processes pays
that N times, so --max-processes bounds it (1,000 engines: about 1.6 GiB). A child's engine
is freed with its Python object, which its hooks keep in reference cycles: a gc pass.
"""
from __future__ import annotations

from .cpu import Cpu
from .knownblocks import KnownBlocks
from .memfork import POOL, ArenaPool, fork_memory
from .memory import PROT_WRITE, AddressSpace


def fork_cpu(parent: Cpu) -> Cpu:
    """A new Cpu (new Unicorn engine, ring 3, vsnap's hooks) holding the parent's CPU state.
    Its memory is not set up: see fork_hardware."""
    child = Cpu()
    child.uc.context_restore(parent.uc.context_save())
    child.instructions = parent.instructions
    child.watch_rdtsc(list(parent._rdtsc_hooks))
    return child


def return_from_syscall(cpu: Cpu, result: int) -> None:
    """A child forked inside the syscall hook (rip still on the `syscall` instruction, which
    Unicorn steps over only after the hook, and only in the parent's engine): the child's
    engine returns from the call with `result` (0: fork's child) as the instruction leaves a
    CPU on x86-64: rax the result, rcx the return address, r11 rflags, rip past it."""
    rip, rflags = cpu.read("rip"), cpu.read("rflags")
    cpu.write_many({"rax": result, "rcx": rip + 2, "r11": rflags, "rip": rip + 2})


def code_cacheable(mem: AddressSpace):
    """The counter's question for the machine (hardware.new_hardware asks it too): may it
    keep this block's count, i.e. can the guest not write any byte of it?"""
    def cacheable(address: int, size: int) -> bool:
        end = address + max(size, 1)
        for v in mem.vmas:
            if v.start < end and address < v.end and v.prot & PROT_WRITE:
                return False
        return True
    return cacheable


def fork_hardware(cpu: Cpu, mem: AddressSpace, pool: ArenaPool | None = POOL
                  ) -> tuple[Cpu, AddressSpace]:
    """The child of a running guest's hardware: a new Cpu with the parent's CPU state and a
    new AddressSpace on it with the parent's memory (memfork.py), wired to each other as
    Machine wires a new process's. The kernel's parts (on_syscall, tsc, deadline) are the
    caller's to wire."""
    child = fork_cpu(cpu)
    child_mem = fork_memory(mem, child, pool)
    child.code_cacheable = code_cacheable(child_mem)
    child.use_known_blocks(KnownBlocks(child_mem))
    return child, child_mem

"""Virtual time and seeded randomness: what makes two runs of a guest the same, byte for byte.

The guest's clock is made of three parts, none of them read from the host:

* user time: NS_PER_INSTRUCTION (1 ns) for each instruction executed, read from the exact
  instruction count (counter.py), which every run keeps;
* system time: SYSCALL_NS (1 us) for each system call;
* time slept: what sleeps, timeouts and waits for a timer skip over, at once.

CPU time is user + system; the monotonic clock is CPU time + time slept; realtime is a fixed
boot date + monotonic. So a timer deadline falls at one exact instruction, the same in every run
and after every resume, and a program that computes without system calls sees time pass.

1 ns per instruction: a round rate near what a real core does (a few instructions per ns for
simple loops, fewer for memory-bound ones), which keeps "instruction k" and "k ns of user time"
the same number. Emulated, vsnap runs a few hundred million instructions a second, so virtual
time goes about 3-5x slower than the wall clock.

The random generator is a counter-mode SHA-256 stream from a seed, so its whole state is two
integers that a checkpoint can save.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

EPOCH_START_NS = 1_700_000_000 * 10**9   # 2023-11-14 22:13:20 UTC, the guest's "boot" time
NS_PER_INSTRUCTION = 1                   # user time per instruction executed
SYSCALL_NS = 1_000                       # system time per system call
TSC_HZ = 1_000_000_000                   # rdtsc counts virtual nanoseconds
CLOCK_MODEL = "insn-1ns+syscall-1us"     # images record it: another model would move time


class ClockError(ValueError):
    """Saved clock values that no run could have produced (an image's, checked on load)."""


@dataclass
class Clock:
    """Nanoseconds since the guest booted, made of instructions, system calls and sleeps.
    `instructions` reads the exact count of instructions executed (the CPU's counter)."""

    boot_realtime_ns: int = EPOCH_START_NS
    system_ns: int = 0   # SYSCALL_NS per system call
    slept_ns: int = 0    # skipped by sleeps and waits: monotonic time that is not CPU time
    instructions: Callable[[], int] = field(default=lambda: 0, repr=False, compare=False)

    def tick(self) -> None:
        """One system call's worth of system time."""
        self.system_ns += SYSCALL_NS

    def untick(self) -> None:
        """Take back a tick: the call parked and will be made again (errors.Blocked)."""
        self.system_ns -= SYSCALL_NS

    @property
    def user_ns(self) -> int:
        return self.instructions() * NS_PER_INSTRUCTION

    @property
    def cpu_ns(self) -> int:
        return self.user_ns + self.system_ns

    @property
    def monotonic_ns(self) -> int:
        return self.user_ns + self.system_ns + self.slept_ns

    @monotonic_ns.setter
    def monotonic_ns(self, t: int) -> None:
        """Sleep until monotonic time t (a wait that ends at a deadline); never backwards."""
        now = self.monotonic_ns
        if t > now:
            self.slept_ns += t - now

    @property
    def realtime_ns(self) -> int:
        return self.boot_realtime_ns + self.monotonic_ns

    def tsc(self) -> int:
        return self.monotonic_ns * TSC_HZ // 10**9

    # deadlines as instruction counts: where the counter must stop for a timer ------------
    def at_user(self, t: int) -> int:
        """The instruction count at which user time reaches t."""
        return -(-t // NS_PER_INSTRUCTION)

    def at_cpu(self, t: int) -> int:
        """The instruction count at which CPU time reaches t (no system call on the way)."""
        return self.at_user(t - self.system_ns)

    def at_monotonic(self, t: int) -> int:
        """The instruction count at which monotonic time reaches t (no system call or sleep
        on the way)."""
        return self.at_user(t - self.system_ns - self.slept_ns)

    # checkpoints -------------------------------------------------------------------------
    def saved(self) -> dict:
        return {"model": CLOCK_MODEL, "boot_realtime_ns": self.boot_realtime_ns,
                "monotonic_ns": self.monotonic_ns, "cpu_ns": self.cpu_ns,
                "system_ns": self.system_ns, "slept_ns": self.slept_ns}

    def load(self, saved: dict, instructions: int) -> None:
        """The clock of a guest saved after `instructions` instructions; ClockError if the
        values do not add up (a damaged or edited image)."""
        if saved.get("model") != CLOCK_MODEL:
            raise ClockError(f"its clock model is {saved.get('model')!r}, this vsnap's is "
                             f"{CLOCK_MODEL!r}")
        system, slept = saved["system_ns"], saved["slept_ns"]
        user = instructions * NS_PER_INSTRUCTION
        if system < 0 or slept < 0 or saved["cpu_ns"] != user + system \
                or saved["monotonic_ns"] != user + system + slept:
            raise ClockError("its clock does not add up: cpu_ns must be instructions x "
                             f"{NS_PER_INSTRUCTION} ns + system_ns, monotonic_ns that + slept_ns")
        self.boot_realtime_ns, self.system_ns, self.slept_ns = \
            saved["boot_realtime_ns"], system, slept


@dataclass
class Random:
    """A deterministic byte stream: SHA-256(seed || counter) blocks."""

    seed: int = 0
    counter: int = 0

    def bytes(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            block = hashlib.sha256(self.seed.to_bytes(8, "little")
                                   + self.counter.to_bytes(8, "little")).digest()
            self.counter += 1
            out += block
        return bytes(out[:n])

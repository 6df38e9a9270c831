"""Virtual time and seeded randomness: what makes two runs of a guest the same, byte for byte.

The clock starts at a fixed date and advances only by rules: a little per system call and by
exactly the requested amount in nanosleep; CPU time moves only by the first. Nothing here
reads the host's clock. The random
generator is a counter-mode SHA-256 stream from a seed, so its whole state is two integers
that a checkpoint can save.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

EPOCH_START_NS = 1_700_000_000 * 10**9   # 2023-11-14 22:13:20 UTC, the guest's "boot" time
SYSCALL_TICK_NS = 1_000                  # each system call takes one virtual microsecond
TSC_HZ = 1_000_000_000                   # rdtsc counts virtual nanoseconds


@dataclass
class Clock:
    """Nanoseconds since the guest booted; realtime = boot time + monotonic."""

    monotonic_ns: int = 0
    boot_realtime_ns: int = EPOCH_START_NS
    # the process's CPU time: what ticks (system calls) add, not what sleeps and waits skip
    cpu_ns: int = 0

    def tick(self, ns: int = SYSCALL_TICK_NS) -> None:
        self.monotonic_ns += ns
        self.cpu_ns += ns

    @property
    def realtime_ns(self) -> int:
        return self.boot_realtime_ns + self.monotonic_ns

    def tsc(self) -> int:
        return self.monotonic_ns * TSC_HZ // 10**9


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

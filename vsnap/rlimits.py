"""Resource limits of a process (getrlimit/setrlimit/prlimit64): a plain kernel object.

Each of Linux's 16 resources has a soft limit (what is enforced) and a hard limit (the ceiling
the soft one may be raised to). The guest is an unprivileged process (uid 1000, no
CAP_SYS_RESOURCE), so it may lower either, raise the soft one up to the hard one, and never
raise a hard one again. The defaults are those `prlimit` shows for a normal user's shell on
Debian; which ones vsnap enforces, and how, is said in README.md ("Resource limits").
"""
from __future__ import annotations

from .abi import consts as C
from .abi import errno as E
from .errors import SyscallError

INF = C.RLIM_INFINITY
NR_OPEN = 4096  # the default hard NOFILE: no descriptor can ever reach it

NAMES = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
         "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")

# (soft, hard), as a normal user's login shell has them (AS and DATA unlimited, as on Linux:
# --max-memory is the machine's memory, its OOM killer, not an rlimit)
DEFAULTS = {
    C.RLIMIT_CPU: (INF, INF), C.RLIMIT_FSIZE: (INF, INF), C.RLIMIT_DATA: (INF, INF),
    C.RLIMIT_STACK: (8 << 20, INF), C.RLIMIT_CORE: (0, INF), C.RLIMIT_RSS: (INF, INF),
    C.RLIMIT_NPROC: (63_704, 63_704), C.RLIMIT_NOFILE: (1024, NR_OPEN),
    C.RLIMIT_MEMLOCK: (8 << 20, 8 << 20), C.RLIMIT_AS: (INF, INF),
    C.RLIMIT_LOCKS: (INF, INF), C.RLIMIT_SIGPENDING: (63_704, 63_704),
    C.RLIMIT_MSGQUEUE: (819_200, 819_200), C.RLIMIT_NICE: (0, 0), C.RLIMIT_RTPRIO: (0, 0),
    C.RLIMIT_RTTIME: (INF, INF),
}


class Limits:
    """The 16 (soft, hard) pairs, changed only by Linux's rules."""

    def __init__(self, values: dict[int, tuple[int, int]] | None = None):
        self.values = dict(DEFAULTS)
        if values:
            self.values.update(values)

    def get(self, resource: int) -> tuple[int, int]:
        if not 0 <= resource < C.RLIM_NLIMITS:
            raise SyscallError(E.EINVAL, f"no resource {resource}")
        return self.values[resource]

    def soft(self, resource: int) -> int:
        return self.values[resource][0]

    def set(self, resource: int, soft: int, hard: int, *, privileged: bool = False) -> None:
        """setrlimit's checks, in Linux's order (kernel/sys.c do_prlimit)."""
        _, old_hard = self.get(resource)
        if soft > hard:
            raise SyscallError(E.EINVAL, "soft limit above the hard limit")
        if resource == C.RLIMIT_NOFILE and hard > 1 << 20:  # fs.nr_open, even for root
            raise SyscallError(E.EPERM, "NOFILE above nr_open")
        if hard > old_hard and not privileged:
            raise SyscallError(E.EPERM, f"raising the hard {NAMES[resource]} limit needs "
                               f"CAP_SYS_RESOURCE")
        self.values[resource] = (soft, hard)

    def changed(self) -> dict[int, tuple[int, int]]:
        """The pairs that differ from the defaults (what an image records)."""
        return {r: v for r, v in self.values.items() if v != DEFAULTS[r]}

    def to_json(self) -> dict:
        return {NAMES[r]: [_num(s), _num(h)] for r, (s, h) in sorted(self.values.items())}


def _num(v: int) -> int | str:
    return "unlimited" if v == INF else v


def from_json(d: dict, fail) -> Limits:
    """Limits from an image's record, checked (fail(path, what) raises)."""
    if not isinstance(d, dict):
        fail("limits", "expected an object")
    values = {}
    for key, pair in d.items():
        if key not in NAMES:
            fail("limits", f"no resource {key!r}")
        if not isinstance(pair, list) or len(pair) != 2:
            fail(f"limits.{key}", "expected [soft, hard]")
        nums = []
        for v in pair:
            if v == "unlimited":
                nums.append(INF)
            elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v < INF:
                nums.append(v)
            else:
                fail(f"limits.{key}", "expected a number or \"unlimited\"")
        if nums[0] > nums[1]:
            fail(f"limits.{key}", "soft limit above the hard limit")
        values[NAMES.index(key)] = tuple(nums)
    limits = Limits(values)
    if limits.values[C.RLIMIT_NOFILE][1] > NR_OPEN:
        fail("limits.NOFILE", f"hard limit above {NR_OPEN}")
    return limits

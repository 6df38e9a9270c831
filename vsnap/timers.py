"""Timers of a process beyond alarm/ITIMER_REAL (which signals.SignalState keeps): the interval
timers ITIMER_VIRTUAL and ITIMER_PROF, and POSIX timers (timer_create). A plain kernel object:
deadlines are absolute nanoseconds on the timer's own clock; kernel/timers.py fires them and
serves the system calls.

A POSIX timer whose signal is still queued when it expires again does not queue another one:
the queued signal's si_overrun counts the extra expirations, as on Linux.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .abi import consts as C

ITIMER_SIGNAL = {C.ITIMER_VIRTUAL: 26, C.ITIMER_PROF: 27}   # SIGVTALRM, SIGPROF
TIMER_CLOCKS = {C.CLOCK_REALTIME, C.CLOCK_MONOTONIC, C.CLOCK_PROCESS_CPUTIME_ID,
                C.CLOCK_THREAD_CPUTIME_ID, C.CLOCK_BOOTTIME}
MAX_TIMER_ID = (1 << 31) - 1


@dataclass
class Timer:
    """One POSIX timer."""

    id: int
    clock: int
    notify: int                   # SIGEV_SIGNAL or SIGEV_NONE
    signo: int
    value: int                    # sigev_value, handed back in si_value
    deadline: int | None = None   # next expiry on `clock` (ns); None: disarmed
    interval: int = 0
    overrun_last: int = 0         # timer_getoverrun: the overrun of the last delivered signal


@dataclass
class Interval:
    """ITIMER_VIRTUAL or ITIMER_PROF: a deadline on the CPU clock and a reload interval."""

    deadline: int | None = None
    interval: int = 0


@dataclass
class Timers:
    posix: dict[int, Timer] = field(default_factory=dict)
    itimers: dict[int, Interval] = field(default_factory=lambda: {
        C.ITIMER_VIRTUAL: Interval(), C.ITIMER_PROF: Interval()})
    next_id: int = 0

    # is any timer armed? A plain attribute, read at every system call's return: whoever
    # changes a deadline calls refresh()
    armed: bool = False

    def refresh(self) -> None:
        self.armed = any(t.deadline is not None for t in self.posix.values()) or any(
            i.deadline is not None for i in self.itimers.values())

    def delivered(self, info) -> None:
        """A timer's signal was taken for delivery: timer_getoverrun reports its overrun."""
        t = self.posix.get(info.timerid)
        if t is not None:
            t.overrun_last = info.overrun

    def new_id(self) -> int:
        """Ids count up from 0 and are not reused until they wrap (Linux's
        next_posix_timer_id)."""
        for _ in range(MAX_TIMER_ID + 1):
            tid, self.next_id = self.next_id, (self.next_id + 1) & MAX_TIMER_ID
            if tid not in self.posix:
                return tid
        raise OverflowError("no timer id left")

    def to_json(self) -> dict:
        return {"next_id": self.next_id,  # `armed` follows from the rest
                "posix": [asdict(t) for _, t in sorted(self.posix.items())],
                "itimers": {str(w): asdict(i) for w, i in sorted(self.itimers.items())}}


def from_json(d, r) -> Timers:
    """Timers from an image's record, each field checked by the image Reader `r`."""
    d = r.obj(d, "timers")
    t = Timers(next_id=r.int(r.key(d, "next_id", "timers"), "timers.next_id", 0, MAX_TIMER_ID))

    def opt(v, path):
        return None if v is None else r.int(v, path, 0, (1 << 63) - 1)

    for i, p in enumerate(r.list(r.key(d, "posix", "timers"), "timers.posix", 1 << 16)):
        path = f"timers.posix[{i}]"
        p = r.obj(p, path)
        timer = Timer(r.int(r.key(p, "id", path), path + ".id", 0, MAX_TIMER_ID),
                      r.choice(r.key(p, "clock", path), path + ".clock", TIMER_CLOCKS),
                      r.choice(r.key(p, "notify", path), path + ".notify",
                               {C.SIGEV_SIGNAL, C.SIGEV_NONE}),
                      r.int(r.key(p, "signo", path), path + ".signo", 0, 64),
                      r.int(r.key(p, "value", path), path + ".value"),
                      opt(r.key(p, "deadline", path), path + ".deadline"),
                      r.int(r.key(p, "interval", path), path + ".interval", 0, (1 << 63) - 1),
                      r.int(r.key(p, "overrun_last", path), path + ".overrun_last", 0,
                            (1 << 31) - 1))
        if timer.id in t.posix:
            r.fail(path, f"timer {timer.id} appears twice")
        if timer.notify == C.SIGEV_SIGNAL and not 1 <= timer.signo <= 64:
            r.fail(path + ".signo", "no such signal")
        t.posix[timer.id] = timer
    its = r.obj(r.key(d, "itimers", "timers"), "timers.itimers")
    for which in ITIMER_SIGNAL:
        path = f"timers.itimers.{which}"
        i = r.obj(r.key(its, str(which), "timers.itimers"), path)
        t.itimers[which] = Interval(opt(r.key(i, "deadline", path), path + ".deadline"),
                                    r.int(r.key(i, "interval", path), path + ".interval", 0,
                                          (1 << 63) - 1))
    t.refresh()
    return t

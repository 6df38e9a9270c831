"""Signal state of a process: dispositions, the blocked mask, pending signals, the alternate
stack and the real-time interval timer. A plain kernel object: delivery (building the frame on
the guest's stack) lives in kernel/sigframe.py, the system calls in kernel/signal.py.

Standard signals (1-31) are a set: sending one that is already pending does nothing. Real-time
signals (32-64) queue, as on Linux.
"""
from __future__ import annotations

from dataclasses import dataclass, field

NSIG = 64
SIGKILL, SIGSTOP, SIGCONT, SIGCHLD, SIGALRM = 9, 19, 18, 17, 14
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))

SIG_DFL, SIG_IGN = 0, 1
SA_SIGINFO, SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND, SA_RESTORER = (
    0x4, 0x08000000, 0x10000000, 0x40000000, 0x80000000, 0x04000000)
SA_NOCLDSTOP, SA_NOCLDWAIT = 0x1, 0x2  # SIGCHLD only: no stop reports; no zombies
SS_ONSTACK, SS_DISABLE = 1, 2

# si_code values
SI_USER, SI_KERNEL, SI_TIMER, SI_TKILL = 0, 0x80, -2, -6
SEGV_MAPERR, SEGV_ACCERR, ILL_ILLOPN, FPE_INTDIV, BUS_ADRERR = 1, 2, 2, 1, 2

CORE = {3, 4, 5, 6, 7, 8, 11, 24, 25, 31}       # QUIT ILL TRAP ABRT BUS FPE SEGV XCPU XFSZ SYS
IGNORE = {17, 23, 28}                            # CHLD URG WINCH
STOP = {19, 20, 21, 22}                          # STOP TSTP TTIN TTOU


def bit(sig: int) -> int:
    return 1 << (sig - 1)


SIGCKPT, SIGCKPTEXIT = 62, 63  # <vsnap/checkpoint.h>


def default_action(sig: int) -> str:
    """What SIG_DFL does: term, core, ignore, stop or cont; and vsnap's two from DragonFly:
    ckpt (checkpoint to the template and go on) and ckptexit (checkpoint, then die of it)."""
    if sig == SIGCKPT:
        return "ckpt"
    if sig == SIGCKPTEXIT:
        return "ckptexit"
    if sig in CORE:
        return "core"
    if sig in IGNORE:
        return "ignore"
    if sig in STOP:
        return "stop"
    if sig == SIGCONT:
        return "cont"
    return "term"


@dataclass
class Action:
    handler: int = SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0


@dataclass
class SigInfo:
    signo: int
    code: int = SI_USER
    pid: int = 0
    uid: int = 0
    addr: int = 0       # si_addr for faults
    errno: int = 0
    timerid: int = 0    # SI_TIMER: si_timerid, si_overrun, si_value
    overrun: int = 0
    value: int = 0


@dataclass
class SignalState:
    actions: dict[int, Action] = field(default_factory=dict)
    blocked: int = 0
    pending: list[SigInfo] = field(default_factory=list)   # in arrival order
    altstack_sp: int = 0
    altstack_size: int = 0
    altstack_flags: int = SS_DISABLE
    # ITIMER_REAL on the virtual clock: absolute deadline (ns since boot) and reload interval
    alarm_deadline: int | None = None
    alarm_interval: int = 0
    # rt_sigsuspend's mask is in force until a handler runs; the frame must save this one
    saved_blocked: int | None = None

    def action(self, sig: int) -> Action:
        return self.actions.get(sig) or Action()

    def set_blocked(self, mask: int) -> None:
        self.blocked = mask & ~UNBLOCKABLE & ((1 << NSIG) - 1)

    def ignored(self, sig: int) -> bool:
        h = self.action(sig).handler
        return h == SIG_IGN or (h == SIG_DFL and default_action(sig) == "ignore")

    def post(self, info: SigInfo) -> None:
        """Generate a signal. An ignored one is dropped at once unless it is blocked (the
        handler may change before it is unblocked), as Linux does."""
        sig = info.signo
        if self.ignored(sig) and not bit(sig) & self.blocked:
            return
        if sig < 32 and any(p.signo == sig for p in self.pending):
            return  # standard signals do not queue
        self.pending.append(info)

    @property
    def pending_mask(self) -> int:
        m = 0
        for p in self.pending:
            m |= bit(p.signo)
        return m

    def deliverable(self) -> bool:
        return bool(self.pending) and bool(self.pending_mask & ~self.blocked)

    def take(self) -> SigInfo | None:
        """The next signal to deliver: synchronous faults were queued first; then the lowest
        number, as Linux picks."""
        for p in [p for p in self.pending if self.ignored(p.signo)
                  and not bit(p.signo) & self.blocked]:
            self.pending.remove(p)  # ignored by the time it was unblocked: gone
        ready = [p for p in self.pending if not bit(p.signo) & self.blocked]
        if not ready:
            return None
        faults = [p for p in ready if p.code > 0 and p.signo in (4, 7, 8, 11)]
        pick = faults[0] if faults else min(ready, key=lambda p: p.signo)
        self.pending.remove(pick)
        return pick

    def on_altstack(self, sp: int) -> bool:
        return self.altstack_sp < sp <= self.altstack_sp + self.altstack_size

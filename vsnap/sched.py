"""The scheduler: which guest process runs next, for how long, and what a process leaves
behind when it ends.

All guest processes run inside this one host process, one at a time, each on its own
Unicorn engine. A process runs until it parks in a call that must wait (errors.Blocked), ends,
or has run QUANTUM instructions while another could run; then the next one in pid order
after it takes its turn (round robin). Nothing here looks at the host's clock or threads, so
every run of the same program with the same input interleaves the same way and prints the
same bytes. Instructions are counted per process; the machine's count (--stats, --save-at,
--max-instructions, the virtual clock) is their sum over every process that ever ran.
"""
from __future__ import annotations

from . import signals as S
from .abi import signals as SIG
from .kernel.proc import sync_ids
from .kernel.signal import fire_timers
from .kernel.timers import next_wakeup
from .waitstatus import (CLD_CONTINUED, CLD_DUMPED, CLD_EXITED, CLD_KILLED, CLD_STOPPED,
                         exited, killed)

QUANTUM = 1_000_000  # a turn: 1 ms of virtual time at 1 ns per instruction (clock.py)


def wire(p) -> None:
    """Connect a process's engine to the kernel: its system calls, the clock's rdtsc, and
    the memory books Unicorn's faults and TLB ask; and its memory to the one budget."""
    cpu, mem, system = p.cpu, p.mem, p.sys
    mem.others = lambda: sum(q.mem._touched_seen for q in system.processes.values()
                             if q.mem is not mem)
    cpu.tsc = system.clock.tsc
    cpu.on_syscall(p.dispatch)
    cpu.on_write_fault = mem.write_fault  # copy-on-write of file pages
    cpu.page_prot = mem.backend.page_prot  # Unicorn's TLB asks our books
    cpu.on_unmapped = mem.grow_down  # MAP_GROWSDOWN
    mem.on_code_change = cpu.code_changed


def wait_status(result, p=None) -> tuple[int, int, int]:
    """(wait status word, si_code, si_status) for how a process ended (a RunResult). The
    core bit says a core file was written (crashdump.py: p's RLIMIT_CORE allowed one, it was
    dumpable, and its directory took the file), as Linux's says."""
    if result.signal is None:
        code = result.status & 0xFF
        return exited(code), CLD_EXITED, code
    signo = SIG.NUMBERS[result.signal]
    core = S.default_action(signo) == "core" and (p is None or p.core_dumped)
    return killed(signo, core), (CLD_DUMPED if core else CLD_KILLED), signo


def runnable(p) -> bool:
    """Can p run now: not ended, not stopped, and not parked (or its wait is over)."""
    if p.ended is not None or p.sys.table.get(p.task.pid).state == "stopped":
        return False
    if p.blocked is None:
        return True
    if p.signals.alarm_deadline is not None or p.timers.armed:
        fire_timers(p)  # its timers run on while it waits (SIGALRM wakes a sleeper)
    if p.blocked.ready():
        # its call runs again first: it sees what woke it (a signal: EINTR) itself
        p.blocked, p.retrying = None, True
        return True
    if p.signals.pending and p.signals.deliverable():
        p.wake_by_signal = True  # its turn starts by ending the call (Process.interrupt)
        return True
    return False


def pick(system):
    """The next process to run: round robin in pid order, starting after the last one that
    ran. None when no process can run."""
    order = sorted(system.processes)
    if not order:
        return None
    last = system.rr_last if system.rr_last is not None else order[0] - 1
    after = [pid for pid in order if pid > last] + [pid for pid in order if pid <= last]
    for pid in after:
        p = system.processes[pid]
        if runnable(p):
            return p
    return None


def next_event(system) -> int | None:
    """When every process waits: the earliest virtual time (ns) one of them wakes by
    itself (a sleep or timeout ends, a timer fires). None: only another's action could wake
    them, and no one can act: a deadlock."""
    times = []
    for q in system.processes.values():
        if q.blocked is None:
            continue
        if q.blocked.deadline is not None:
            times.append(q.blocked.deadline)
        t = next_wakeup(q)
        if t is not None:
            times.append(t)
    return min(times) if times else None


def others_can_run(system, p) -> bool:
    """Is there another process that is not stopped (so p's turn ends after a quantum)?
    A parked one counts too: whether a turn is cut must not depend on who is parked, which
    a resumed image cannot tell until each parked call runs again (saves are between
    instructions, and a parked process is at its syscall instruction)."""
    return any(q is not p and system.table.get(q.task.pid).state != "stopped"
               for q in system.processes.values())


def post_sigchld(system, ppid: int, child: int, code: int, status: int) -> None:
    """SIGCHLD to the parent, with the child's pid and status as Linux fills them."""
    parent = system.processes.get(ppid)
    if parent is not None:
        parent.signals.post(S.SigInfo(SIG.NUMBERS["SIGCHLD"], code, pid=child,
                                      uid=parent.task.uid, value=status))


def policy(system):
    """For ProcessTable.exit: (SIGCHLD ignored, SA_NOCLDWAIT) of a parent."""
    sigchld = SIG.NUMBERS["SIGCHLD"]

    def of(ppid: int) -> tuple[bool, bool]:
        parent = system.processes.get(ppid)
        if parent is None:
            return False, False
        act = parent.signals.action(sigchld)
        return act.handler == S.SIG_IGN, bool(act.flags & S.SA_NOCLDWAIT)
    return of


def ended(system, p, result) -> None:
    """p has ended (a RunResult): it becomes a zombie for its parent to wait for, its
    children go to their new parent, and its parent hears of it (SIGCHLD). Its engine,
    memory and files are let go now, as Linux frees them at exit."""
    pid = p.task.pid
    status, code, si_status = wait_status(result, p)
    p.ended = result
    # what a wait for it adds to its parent's RUSAGE_CHILDREN: its CPU time and its children's
    system.child_times[pid] = (p.user_ns + p.children_ns[0], p.system_ns + p.children_ns[1])
    system.retired += p.instructions
    note = system.table.exit(pid, status, policy(system))
    del system.processes[pid]
    if p.borrowed_from is not None:  # a vfork child: the memory is its parent's
        cpu = p.cpu
        parent = detach_borrower(p, cpu)
        p.release(memory=False)
        restore_lender(parent, cpu)
    else:
        p.release(memory=p.lent_to is None)  # a vfork child may still run on it
    sync_ids(system)  # the reparented ones: their ppid is the table's
    for ppid in note.sigchld:
        post_sigchld(system, ppid, pid, code, si_status)
    for pgid in note.hup_cont:
        for q in list(system.processes.values()):
            if q.task.pgid == pgid:
                q.signals.post(S.SigInfo(SIG.NUMBERS["SIGHUP"], S.SI_KERNEL))
                q.signals.post(S.SigInfo(SIG.NUMBERS["SIGCONT"], S.SI_KERNEL))
    for orphan in note.orphans:  # PR_SET_PDEATHSIG: the parent died
        q = system.processes.get(orphan)
        if q is not None and q.task.pdeathsig:
            q.signals.post(S.SigInfo(q.task.pdeathsig, S.SI_USER, pid=pid, uid=q.task.uid))
    for zombie in note.reaped:
        system.child_times.pop(zombie, None)


def stop(system, p, signo: int) -> None:
    """A stop signal's default action: p stops until SIGCONT; its parent hears of it
    (SIGCHLD with CLD_STOPPED, unless SA_NOCLDSTOP)."""
    _stop_news(system, p, system.table.stopped(p.task.pid, signo), CLD_STOPPED, signo)


def cont(system, p) -> None:
    """SIGCONT reached p: a stopped p runs again; its parent hears of it (CLD_CONTINUED)."""
    _stop_news(system, p, system.table.continued(p.task.pid), CLD_CONTINUED, S.SIGCONT)


def _stop_news(system, p, ppid: int | None, code: int, status: int) -> None:
    """SIGCHLD to the parent the table named, unless it set SA_NOCLDSTOP."""
    parent = system.processes.get(ppid) if ppid is not None else None
    if parent is not None and not parent.signals.action(S.SIGCHLD).flags & S.SA_NOCLDSTOP:
        post_sigchld(system, ppid, p.task.pid, code, status)


def start_borrow(child) -> None:
    """A vfork child's first turn: the parent's engine state is put aside (the parent waits
    at its clone call) and the child's registers go in."""
    parent, cpu = child.borrowed_from, child.cpu
    parent.lent_context = cpu.uc.context_save()
    parent.lent_count = cpu.instructions
    child.borrow_base = cpu.instructions
    cpu.restore_registers(child.borrow_regs)
    child.borrow_regs = None
    wire(child)


def detach_borrower(child, cpu):
    """A vfork child stops running on its parent's engine `cpu` (it execs or ends): its
    count so far becomes its own. Returns the parent, whose state restore_lender puts back
    once the engine has stopped (not from inside its syscall hook: Unicorn would move the
    parent's rip past the instruction it waits at)."""
    parent = child.borrowed_from
    if child.borrow_regs is None:  # it ran
        child.base_instructions += cpu.instructions - child.borrow_base
    child.borrowed_from = child.borrow_regs = None
    return parent


def restore_lender(parent, cpu) -> None:
    """The parent's engine state and count come back; its system calls are its own again."""
    if parent.lent_context is not None:
        cpu.uc.context_restore(parent.lent_context)
        cpu.instructions = parent.lent_count
    parent.lent_to = parent.lent_context = None
    wire(parent)


def parked_when_saved():
    """A process an image saved parked (tree.py): it waits for its turn like any parked
    process whose wait may be over, and then its call runs again and parks anew if not."""
    from .errors import Blocked
    return Blocked("parked when saved", lambda: True)


def turn_goes_on(system):
    """The process whose turn a stop cut short (a save point, a timer), if it can go on:
    the turn is not over until the scheduler says so (System.turn)."""
    t = system.turn
    if t is None:
        return None
    p = system.processes.get(t[0])
    if p is None or p.blocked is not None \
            or system.table.get(p.task.pid).state == "stopped":
        system.turn = None
        return None
    return p


def end_turn(system, k) -> None:
    """k's turn is over: the round robin moves past it if it ran (a parked call tried
    again in vain moves nothing: pick)."""
    t = system.turn
    if t is not None and t[0] == k.task.pid:
        if k.cpu.instructions != t[2] or k.ended is not None:
            system.rr_last = t[0]
    elif k.ended is not None:
        system.rr_last = k.task.pid
    system.turn = None

"""The process table: who exists, who is whose parent, process groups, sessions, zombies.

A plain kernel object (no CPU, no signals, no files), with Linux's rules from kernel/fork.c,
kernel/exit.c, kernel/sys.c, kernel/signal.c and kernel/pid.c. Operations raise SyscallError with
the errno Linux returns; misuse by vsnap itself (an unknown pid where a live one is required)
raises LookupError/ValueError.

Two pids are virtual, never in the table: 999, vsnap itself in the role of the shell that
started the first guest (pgid 999, sid 999: the guest's session, as process.py says), and 1,
the guest's init, which adopts orphans and reaps each one as soon as it is a zombie.
Zombies stay in the table (and keep their pid, pgid and sid in use) until they are reaped.
Children are kept in Linux's order: copy_process() and reparenting append at the tail of the
parent's children list, and do_wait() scans it from the head, so when several children are
ready, wait reports the one that became a child first (for fork: the oldest).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Callable

from .abi import errno as E
from .errors import SyscallError
from .waitstatus import (CONTINUED_STATUS, P_ALL, P_PGID, P_PID, P_PIDFD, WAIT4_OPTIONS,
                         WAITID_OPTIONS, WALL, WCLONE, WCONTINUED, WEXITED, WNOWAIT, WSTOPPED,
                         is_exit_status)

FIRST_PID = 1000          # vsnap.task.GUEST_PID: the first guest process
VIRTUAL_PARENT = 999      # vsnap, as the shell that started it
INIT = 1                  # the guest's init: adopts orphans, reaps them at once
VIRTUAL = {VIRTUAL_PARENT: (VIRTUAL_PARENT, VIRTUAL_PARENT), INIT: (INIT, INIT)}  # pid: (pgid, sid)
PID_MAX = 4194304         # /proc/sys/kernel/pid_max on a 64-bit systemd machine (PID_MAX_LIMIT)
RESERVED_PIDS = 300       # kernel/pid.c: after the wrap, pids start again here
DEFAULT_MAX_PROCESSES = 128  # each costs an engine (about 1.6 MiB: cpufork.py) and its memory
INT_MIN = -(1 << 31)

@dataclass
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str = "run"     # "run" | "stopped" | "zombie"
    status: int = 0        # a zombie's wait status word
    stopsig: int = 0       # while stopped: the signal that stopped it
    report: str = ""       # "stopped" | "continued": an event its parent has not waited for yet
    execd: bool = False    # has called execve since fork (setpgid by the parent: EACCES)
    subreaper: bool = False  # PR_SET_CHILD_SUBREAPER
    link: int = 0          # position in its parent's children list (appended at the tail)


@dataclass
class ExitNotice:
    """What exit() leaves for the caller to do, in this order."""
    hup_cont: list[int] = field(default_factory=list)  # pgids: SIGHUP, then SIGCONT, to each member
    sigchld: list[int] = field(default_factory=list)   # pids to send SIGCHLD (CLD_EXITED, ...)
    wake: list[int] = field(default_factory=list)      # parents whose parked wait must retry
    orphans: list[int] = field(default_factory=list)   # live children with a new parent (PDEATHSIG)
    reaped: list[int] = field(default_factory=list)    # zombies gone at once (init, SIG_IGN...)


def _no_policy(ppid: int) -> tuple[bool, bool]:
    return False, False


class ProcessTable:
    def __init__(self, max_processes: int = DEFAULT_MAX_PROCESSES, pid_max: int = PID_MAX):
        if not (type(max_processes) is int and max_processes >= 1):
            raise ValueError(f"max_processes must be a positive integer, not {max_processes!r}")
        if not (type(pid_max) is int and FIRST_PID + 2 <= pid_max <= PID_MAX):
            raise ValueError(f"pid_max must be between {FIRST_PID + 2} and {PID_MAX},"
                             f" not {pid_max!r}")
        self.max_processes, self.pid_max = max_processes, pid_max
        self._procs: dict[int, Proc] = {}
        self._last_pid = FIRST_PID
        self._next_link = 1
        self._procs[FIRST_PID] = Proc(FIRST_PID, VIRTUAL_PARENT, FIRST_PID, VIRTUAL_PARENT,
                                      execd=True, link=self._link())

    # ---- looking things up
    def _link(self) -> int:
        self._next_link += 1
        return self._next_link - 1

    def get(self, pid: int) -> Proc | None:
        return self._procs.get(pid)

    def _alive(self, pid: int) -> Proc:
        p = self._procs.get(pid)
        if p is None or p.state == "zombie":
            raise LookupError(f"process table: {pid} is not a live process")
        return p

    def processes(self) -> list[Proc]:
        return [self._procs[pid] for pid in sorted(self._procs)]

    def children(self, pid: int) -> list[Proc]:
        """pid's children (zombies included) in Linux's children-list order."""
        return sorted((p for p in self._procs.values() if p.ppid == pid), key=lambda p: p.link)

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for p in self.processes():
            out.setdefault(p.pgid, []).append(p.pid)
        return dict(sorted(out.items()))

    def sessions(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for p in self.processes():
            if p.pgid not in out.setdefault(p.sid, []):
                out[p.sid].append(p.pgid)
        return {sid: sorted(g) for sid, g in sorted(out.items())}

    def _ids(self, pid: int) -> tuple[int, int] | None:
        """(pgid, sid) of a process in the table or of a virtual one."""
        p = self._procs.get(pid)
        return (p.pgid, p.sid) if p else VIRTUAL.get(pid)

    # ---- fork, exec, exit
    def _alloc_pid(self) -> int:
        """alloc_pid(): the next number after the last one given that is not in use as a pid,
        pgid or sid (a struct pid lives while any of those uses it), wrapping from pid_max - 1
        to RESERVED_PIDS; EAGAIN when every number is in use."""
        used = set(VIRTUAL)
        for p in self._procs.values():
            used.update((p.pid, p.pgid, p.sid))
        pid = self._last_pid
        for _ in range(len(used) + 1):
            pid = pid + 1 if pid + 1 < self.pid_max else RESERVED_PIDS
            if pid not in used:
                self._last_pid = pid
                return pid
        raise SyscallError(E.EAGAIN, f"every pid below pid_max {self.pid_max} is in use")

    def fork(self, parent: int) -> int:
        """copy_process(): the child inherits pgid and sid, not the subreaper flag, has not
        exec'd, and joins the tail of its parent's children list. EAGAIN: the budget."""
        p = self._alive(parent)
        if len(self._procs) >= self.max_processes:
            raise SyscallError(E.EAGAIN, f"the process budget (--max-processes"
                                         f" {self.max_processes}, zombies included) is used up")
        pid = self._alloc_pid()
        self._procs[pid] = Proc(pid, parent, p.pgid, p.sid, link=self._link())
        return pid

    def spawn(self) -> int:
        """A process vsnap itself starts, as it started the first: 999's child, leader of
        its own group in 999's session (`vsnap run --watch` starting the service again).
        EAGAIN: the budget."""
        if len(self._procs) >= self.max_processes:
            raise SyscallError(E.EAGAIN, f"the process budget (--max-processes"
                                         f" {self.max_processes}, zombies included) is used up")
        pid = self._alloc_pid()
        self._procs[pid] = Proc(pid, VIRTUAL_PARENT, pid, VIRTUAL_PARENT, execd=True,
                                link=self._link())
        return pid

    def exec(self, pid: int) -> None:
        """execve() succeeded: the parent may no longer setpgid() it (EACCES)."""
        self._alive(pid).execd = True

    def set_subreaper(self, pid: int, on: bool) -> None:
        self._alive(pid).subreaper = bool(on)

    def _reaper(self, p: Proc) -> int:
        """find_new_reaper(): the nearest ancestor with PR_SET_CHILD_SUBREAPER, else init."""
        a = self._procs.get(p.ppid)
        while a is not None:
            if a.subreaper and a.state != "zombie":
                return a.pid
            a = self._procs.get(a.ppid)
        return INIT

    def _orphaned(self, pgid: int, ignored: int | None) -> bool:
        """will_become_orphaned_pgrp(): no member (other than `ignored`, zombies, children of
        init) has a parent in another group of the same session."""
        for m in self._procs.values():
            if m.pgid != pgid or m.pid == ignored or m.state == "zombie" or m.ppid == INIT:
                continue
            ids = self._ids(m.ppid)
            if ids and ids[0] != pgid and ids[1] == m.sid:
                return False
        return True

    def _kill_orphaned(self, p: Proc, parent: int, ignored: int | None, note: ExitNotice) -> None:
        """kill_orphaned_pgrp(): a group that p linked to its session through `parent`, orphaned
        now, with a stopped member, gets SIGHUP then SIGCONT (POSIX: nobody is left to continue
        it). As in Linux, a zombie child counts as a link, so an already orphaned group can be
        told again."""
        ids = self._ids(parent)
        if (ids and ids[0] != p.pgid and ids[1] == p.sid and self._orphaned(p.pgid, ignored)
                and any(m.pgid == p.pgid and m.state == "stopped" for m in self._procs.values())
                and p.pgid not in note.hup_cont):
            note.hup_cont.append(p.pgid)

    def _notify(self, z: Proc, note: ExitNotice, policy) -> None:
        """do_notify_parent() for zombie z: init reaps at once; vsnap (999) collects it with
        reap(); a parent whose SIGCHLD is SIG_IGN gets no signal, and SIG_IGN or SA_NOCLDWAIT
        reap it at once; the parent is woken in any case."""
        if z.ppid == VIRTUAL_PARENT:
            return
        reap = z.ppid == INIT
        if not reap:
            ignored, nocldwait = policy(z.ppid)
            if not ignored:
                note.sigchld.append(z.ppid)
            note.wake.append(z.ppid)
            reap = ignored or nocldwait
        if reap:
            del self._procs[z.pid]
            note.reaped.append(z.pid)

    def exit(self, pid: int, status: int,
             sigchld: Callable[[int], tuple[bool, bool]] | None = None) -> ExitNotice:
        """exit_notify(): pid becomes a zombie with wait status `status`. Its children go to the
        nearest subreaper ancestor or to init (zombies among them are notified to the new
        parent); orphaned groups with stopped members are named in hup_cont. sigchld(ppid) ->
        (SIGCHLD is SIG_IGN, SA_NOCLDWAIT is set) for a parent in the table."""
        if not is_exit_status(status):
            raise ValueError(f"process table: {status:#x} is not an exit status word")
        p, policy, note = self._alive(pid), sigchld or _no_policy, ExitNotice()
        p.state, p.stopsig, p.report = "run", 0, ""   # a fatal signal ends a stop (no report)
        reaper = self._reaper(p)
        for c in self.children(pid):               # forget_original_parent() + reparent_leader()
            c.ppid, c.link = reaper, self._link()
            if c.state == "zombie":
                self._notify(c, note, policy)
            else:
                note.orphans.append(c.pid)
            self._kill_orphaned(c, pid, None, note)
        self._kill_orphaned(p, p.ppid, pid, note)  # our own group, once we are gone
        p.state, p.status = "zombie", status
        self._notify(p, note, policy)
        return note

    def reap(self, pid: int) -> int:
        """Remove zombie pid (vsnap collecting a child of 999); its wait status."""
        p = self._procs.get(pid)
        if p is None or p.state != "zombie":
            raise LookupError(f"process table: {pid} is not a zombie")
        del self._procs[pid]
        return p.status

    # ---- stop and continue
    def stopped(self, pid: int, signo: int) -> int | None:
        """do_signal_stop(): pid stops; a WUNTRACED report replaces an unread WCONTINUED one.
        Returns the parent to send SIGCHLD (CLD_STOPPED) unless it set SA_NOCLDSTOP; None if it
        was already stopped or the parent is virtual."""
        p = self._alive(pid)
        if not 1 <= signo <= 64:
            raise ValueError(f"process table: {signo} is not a signal number")
        if p.state == "stopped":
            return None
        p.state, p.stopsig, p.report = "stopped", signo, "stopped"
        return p.ppid if p.ppid in self._procs else None

    def continued(self, pid: int) -> int | None:
        """SIGCONT to a stopped process (prepare_signal()): it runs, an unread stop report is
        dropped and WCONTINUED will see it. Returns the parent to send SIGCHLD (CLD_CONTINUED),
        None if it was not stopped or the parent is virtual."""
        p = self._alive(pid)
        if p.state != "stopped":
            return None
        p.state, p.stopsig, p.report = "run", 0, "continued"
        return p.ppid if p.ppid in self._procs else None

    # ---- wait
    def wait(self, caller: int, pid_spec: int, options: int) -> tuple[int, int] | None:
        """do_wait() with wait4's pid: -1 any child, > 0 that child, 0 any child in the caller's
        group, < -1 any child in group -pid_spec. options are waitid's bits (wait4 adds
        WEXITED). (pid, status word), reaping a zombie unless WNOWAIT; None when matching
        children exist but none has news (WNOHANG: return 0; else park); ECHILD when none
        matches."""
        me = self._alive(caller)
        if pid_spec == -1:
            return self._wait(me, lambda c: True, options)
        if pid_spec > 0:
            return self._wait(me, lambda c: c.pid == pid_spec, options)
        pgid = me.pgid if pid_spec == 0 else -pid_spec
        return self._wait(me, lambda c: c.pgid == pgid, options)

    def wait4(self, caller: int, pid: int, options: int) -> tuple[int, int] | None:
        """pid_t wait4(pid_t pid, int *wstatus, int options, struct rusage *rusage);"""
        if options & ~WAIT4_OPTIONS:
            raise SyscallError(E.EINVAL, f"wait4: unknown options {options & ~WAIT4_OPTIONS:#x}")
        return self.wait(caller, pid, options | WEXITED)

    def waitid(self, caller: int, idtype: int, id_: int, options: int) -> tuple[int, int] | None:
        """int waitid(idtype_t idtype, id_t id, siginfo_t *infop, int options);"""
        if options & ~WAITID_OPTIONS or not options & (WEXITED | WSTOPPED | WCONTINUED):
            raise SyscallError(E.EINVAL, f"waitid: bad options {options:#x}")
        if idtype == P_ALL:
            return self.wait(caller, -1, options)
        if idtype == P_PID and id_ > 0:
            return self.wait(caller, id_, options)
        if idtype == P_PGID and id_ >= 0:       # since Linux 5.4, id 0 is the caller's group
            pgid = id_ or self._alive(caller).pgid
            return self._wait(self._alive(caller), lambda c: c.pgid == pgid, options)
        why = "vsnap has no pidfds" if idtype == P_PIDFD else f"bad idtype {idtype} or id {id_}"
        raise SyscallError(E.EINVAL, f"waitid: {why}")

    def _wait(self, me: Proc, match, options: int) -> tuple[int, int] | None:
        """wait_consider_task() over the children list, first hit wins. Without WEXITED a zombie
        is no child to wait for (wait_task_zombie() returns 0 and leaves ECHILD standing).
        __WCLONE without __WALL asks for children with another exit signal: vsnap has none."""
        found = False
        if options & WCLONE and not options & WALL:
            match = lambda c: False  # noqa: E731
        for c in self.children(me.pid):
            if not match(c) or c.state == "zombie" and not options & WEXITED:
                continue
            found = True
            keep = options & WNOWAIT
            if c.state == "zombie":
                if not keep:
                    del self._procs[c.pid]
                return c.pid, c.status
            if options & WSTOPPED and c.report == "stopped":
                c.report = c.report if keep else ""
                return c.pid, (c.stopsig << 8) | 0x7F
            elif options & WCONTINUED and c.report == "continued":
                c.report = c.report if keep else ""
                return c.pid, CONTINUED_STATUS
        if not found:
            raise SyscallError(E.ECHILD, "no child process matches")
        return None

    # ---- groups and sessions
    def _target(self, caller: int, pid: int) -> Proc:
        p = self._procs.get(caller if pid == 0 else pid)
        if p is None:
            raise SyscallError(E.ESRCH, f"no process {pid}")
        return p

    def getpgid(self, caller: int, pid: int) -> int:
        """pid_t getpgid(pid_t pid); 999 and 1 answer for themselves."""
        if pid in VIRTUAL:
            return VIRTUAL[pid][0]
        return self._target(caller, pid).pgid

    def getsid(self, caller: int, pid: int) -> int:
        """pid_t getsid(pid_t pid); Linux does not refuse other sessions (no EPERM)."""
        if pid in VIRTUAL:
            return VIRTUAL[pid][1]
        return self._target(caller, pid).sid

    def setpgid(self, caller: int, pid: int, pgid: int) -> None:
        """int setpgid(pid_t pid, pid_t pgid); the checks of kernel/sys.c, in its order."""
        me = self._alive(caller)
        pid = pid or caller
        pgid = pgid or pid
        if pgid < 0:
            raise SyscallError(E.EINVAL, "negative process group")
        p = self._procs.get(pid)
        if p is None:
            raise SyscallError(E.ESRCH, f"no process {pid}")
        if p.ppid == caller:
            if p.sid != me.sid:
                raise SyscallError(E.EPERM, f"child {pid} is in another session")
            if p.execd:
                raise SyscallError(E.EACCES, f"child {pid} has already exec'd")
        elif p is not me:
            raise SyscallError(E.ESRCH, f"{pid} is neither the caller nor its child")
        if p.sid == p.pid:
            raise SyscallError(E.EPERM, f"{pid} is a session leader")
        if pgid != pid and not any(q.pgid == pgid and q.sid == me.sid
                                   for q in self._procs.values()):
            raise SyscallError(E.EPERM, f"no process group {pgid} in the caller's session")
        p.pgid = pgid

    def setsid(self, caller: int) -> int:
        """pid_t setsid(void); EPERM when a group with the caller's pid exists (a group leader)."""
        me = self._alive(caller)
        if me.sid == caller or any(q.pgid == caller for q in self._procs.values()):
            raise SyscallError(E.EPERM, f"{caller} already leads a process group")
        me.sid = me.pgid = caller
        return caller

    def kill_targets(self, caller: int, pid: int) -> list[int]:
        """kill_something_info(): the live processes kill(pid, sig) signals, in pid order.
        A zombie is a target that ignores signals: kill succeeds and nothing is delivered.
        ESRCH when no process (zombie or not) matches; vsnap (999) and init (1) are off limits,
        as they are for an unprivileged user (EPERM). kill(-1) never says ESRCH: vsnap (999)
        is always there, and Linux counts the processes it may not signal (then returns 0)."""
        if pid == INT_MIN:
            raise SyscallError(E.ESRCH, "kill(INT_MIN)")
        if pid in VIRTUAL or -pid in VIRTUAL and pid != -1:
            raise SyscallError(E.EPERM, f"vsnap's virtual process {abs(pid)} takes no signals")
        if pid > 0:
            hit = [self._procs[pid]] if pid in self._procs else []
        elif pid == -1:
            hit = [p for p in self.processes() if p.pid != caller]
        else:
            pgid = self._alive(caller).pgid if pid == 0 else -pid
            hit = [p for p in self.processes() if p.pgid == pgid]
        if not hit and pid != -1:
            raise SyscallError(E.ESRCH, f"kill({pid}): no such process")
        return [p.pid for p in hit if p.state != "zombie"]

    # ---- the checkpoint image
    def saved(self) -> dict:
        return {"version": 1, "max_processes": self.max_processes, "pid_max": self.pid_max,
                "last_pid": self._last_pid, "next_link": self._next_link,
                "processes": [asdict(p) for p in self.processes()]}

    @classmethod
    def load(cls, d) -> ProcessTable:
        from .proctable_load import check
        t = cls(d["max_processes"], d["pid_max"]) if isinstance(d, dict) and _ints(
            d, "max_processes", "pid_max") else None
        if t is None:
            raise ValueError("process table: not an object with integer max_processes and pid_max")
        t._procs = check(d, t.pid_max, [f.name for f in fields(Proc)], Proc)
        t._last_pid, t._next_link = d["last_pid"], d["next_link"]
        return t


def _ints(d: dict, *keys) -> bool:
    return all(type(d.get(k)) is int for k in keys)

"""The system: what every guest process shares. The sandbox and its file system, the
terminal, the clock, the seeded random source, the lock book, the guest's inode numbers, and
the accounts of what the guest asked for (system calls made, requests refused).

A Process (kernel/core.py) holds what is its own: its engine and memory, fds, signals,
limits, timers and identity. Handlers take the process and reach what is shared through
`p.sys`, so every handler shows which of the two it touches.
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections import deque

from .clock import Clock, Random
from .locks import LockBook
from .proctable import ProcessTable
from .terminal import Terminal


class System:
    def __init__(self, vfs, console, *, seed: int = 0):
        self.vfs = vfs
        self.console = console
        self.terminal = Terminal.of(console)  # the one terminal, its termios (terminal.py)
        self.clock = Clock()
        self.random = Random(seed)
        self.locks = LockBook()  # flock, record locks and leases (kernel/filelocks.py)
        self.processes: dict[int, object] = {}  # pid -> Process, while it lives
        self.mapped_mtimes: dict = {}  # files mapped shared for writing (kernel/mapmtime.py)
        self.current = None  # the process whose instructions or system call run now
        self.init = None     # the first process: when it ends, the run ends
        # the round robin's place: the last process whose turn ran an instruction (a parked
        # call tried again in vain moves nothing: sched.pick)
        self.rr_last: int | None = None
        # the turn under way: [pid, where it ends (that process's engine count; None: no
        # end, it is alone), the count it began at]. A stop that is not the scheduler's
        # (a save point, a timer, a fault handed to the guest) does not end it: a run
        # stopped at instruction k goes on exactly as if it had not stopped
        self.turn: list | None = None
        self.table = ProcessTable()  # pids, parents, groups, sessions, zombies (Linux's rules)
        self.forked = False  # has any process forked (--strace then names the pid)
        self.machine = None  # the Machine that runs this system (sys_checkpoint saves it)
        # where sys_checkpoint(CKPT_FREEZE, -1, -1) and SIGCKPT write: %N the program's name,
        # %P its pid, %U its uid (DragonFly's kern.ckptfile); `vsnap run --ckptfile`
        self.ckpt_template = "%N.ckpt"
        self.over_budget = None  # a RunResult once the guest passed --max-processes
        self.retired = 0     # instructions run by processes that have ended
        self.child_times: dict[int, tuple[int, int]] = {}  # zombie -> (instructions, calls)
        # signals from the host (Ctrl-C, kill PID) arrive on another thread: they wait here
        # until the main thread takes them, at a system call or when the CPU is stopped
        self.host_signals: deque[int] = deque()
        self.wait_for_host_signal = lambda: False  # the CLI blocks here for pause()
        self.inodes: dict[tuple[int, int], int] = {}  # host (dev, ino) -> guest inode number
        self.next_pipe_ino = 8192  # the next pipe's inode (kernel/pipefile.py FIRST_INO)
        self.eventfd_ids: set[int] = set()  # eventfd-id numbers in use (kernel/eventfd.py)
        self.ctimes: dict[int, int] = {}  # guest inode -> virtual time of its last status change
        self.syscall_count = 0
        self.unknown_reported: set[int] = set()
        # what the guest asked for and vsnap refused ("prctl", "prctl(PR_SET_MM)") -> times:
        # --stats lists it; each key is named once through `notice`
        self.refused: dict[str, int] = {}
        self.strace = None      # a callable(line) when --strace is on
        # the host network (hostnet.HostNet): what --listen/--connect allow, the host
        # sockets; None until a guest needs it or the CLI gives options (hostnet.of)
        self.net = None
        # vsnap's own lines about the guest (never the guest's stderr): Machine(log=...) and
        # the CLI's --log/--quiet choose where they go (vsnap/diag.py)
        self.notice = lambda line: sys.stderr.write(line + "\n")
        if vfs is not None:  # the sandbox's /dev and /proc come from the processes' state
            from .kernel.virtual import VirtualFiles
            vfs.virtual = VirtualFiles(self)

    def instructions(self) -> int:
        """Instructions run by every guest process so far: the machine's count, which
        --stats shows, --save-at and --max-instructions count in, and the clock follows."""
        return self.retired + sum(p.instructions for p in self.processes.values())

    def guest_inode(self, st: os.stat_result, guest_path: str) -> int:
        """The guest's inode number for a host file: made from the guest path it was first seen
        under, so the same file has the same number in every run and every root (host inode
        numbers differ between roots). Kept per host inode, so hard links agree."""
        key = (st.st_dev, st.st_ino)
        ino = self.inodes.get(key)
        if ino is None:
            digest = hashlib.sha256(os.fsencode(guest_path)).digest()
            ino = 1000 + int.from_bytes(digest[:4], "little") % 0x7FFF_0000
            taken = set(self.inodes.values())
            while ino in taken:
                ino += 1
            self.inodes[key] = ino
        return ino

    def refuse(self, what: str, line: str) -> None:
        """Count a request vsnap does not implement (`what`: a call, or a call and an option),
        and say so once per `what` (a loop of refused calls prints one line, not thousands)."""
        if what not in self.refused:
            self.notice(line)
        self.refused[what] = self.refused.get(what, 0) + 1

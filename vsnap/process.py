"""The process: identity and the per-process state that is neither memory nor files.

Fixed numbers, not the host's: a guest always sees the same pid, so two runs print the same
bytes and a checkpoint restored elsewhere keeps its identity (unlike DragonFly's checkpoints,
which cannot keep the pid: see seeds/004).
"""
from __future__ import annotations

from dataclasses import dataclass

GUEST_PID = 1000


@dataclass
class Process:
    pid: int = GUEST_PID
    ppid: int = GUEST_PID - 1
    pgid: int = GUEST_PID
    sid: int = GUEST_PID - 1
    uid: int = 1000
    gid: int = 1000
    cwd: str = "/"
    umask: int = 0o022
    exe: str = ""            # guest path of the program, what /proc/self/exe points to
    tid_address: int = 0     # set_tid_address: cleared at exit (no threads yet)
    robust_list: int = 0
    exit_status: int | None = None
    exit_signal: str | None = None
    # prctl state (kernel/prctl.py); comm starts as the program file's name, as exec sets it
    comm: str = ""             # PR_SET_NAME: at most 15 bytes (latin-1 keeps raw bytes)
    dumpable: int = 1          # PR_SET_DUMPABLE
    child_subreaper: int = 0   # PR_SET_CHILD_SUBREAPER
    pdeathsig: int = 0         # PR_SET_PDEATHSIG
    no_new_privs: int = 0      # PR_SET_NO_NEW_PRIVS: once set, never cleared
    keepcaps: int = 0          # PR_SET_KEEPCAPS
    timerslack_ns: int = 50_000  # PR_SET_TIMERSLACK (Linux's default slack)
    thp_disable: int = 0       # PR_SET_THP_DISABLE
    membarrier: int = 0        # membarrier registrations (MEMBARRIER_CMD_REGISTER_* bits)

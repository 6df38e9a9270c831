"""The task: a process's identity and the per-process state that is neither memory nor files
(Linux keeps these in task_struct; memory, files and signals are the Process's own objects).

Fixed numbers, not the host's: a guest always sees the same pid, so two runs print the same
bytes and a checkpoint restored elsewhere keeps its identity (unlike DragonFly's checkpoints,
which cannot keep the pid: see seeds/004).
"""
from __future__ import annotations

from dataclasses import dataclass, field

GUEST_PID = 1000


@dataclass
class Task:
    pid: int = GUEST_PID
    ppid: int = GUEST_PID - 1
    pgid: int = GUEST_PID
    sid: int = GUEST_PID - 1
    uid: int = 1000
    gid: int = 1000
    cwd: str = "/"
    # once the cwd's directory was removed: its {"mode", "mtime_ns"} (kernel/dirref.py)
    cwd_removed: dict | None = None
    umask: int = 0o022
    exe: str = ""            # guest path of the program, what /proc/self/exe points to
    tid_address: int = 0     # set_tid_address: cleared at exit (no threads yet)
    robust_list: int = 0
    exit_status: int | None = None
    exit_signal: str | None = None
    # prctl state (kernel/prctl.py); the name (PR_SET_NAME) is ExecLayout.comm, which exec sets
    dumpable: int = 1          # PR_SET_DUMPABLE
    child_subreaper: int = 0   # PR_SET_CHILD_SUBREAPER
    pdeathsig: int = 0         # PR_SET_PDEATHSIG
    no_new_privs: int = 0      # PR_SET_NO_NEW_PRIVS: once set, never cleared
    keepcaps: int = 0          # PR_SET_KEEPCAPS
    timerslack_ns: int = 50_000  # PR_SET_TIMERSLACK (Linux's default slack)
    thp_disable: int = 0       # PR_SET_THP_DISABLE
    membarrier: int = 0        # membarrier registrations (MEMBARRIER_CMD_REGISTER_* bits)


@dataclass
class ExecLayout:
    """What exec left for /proc/self to show (Linux keeps these in mm_struct): where the
    argument and environment strings lie in guest memory (cmdline and environ read them there,
    so a program that rewrites its argv shows the new text), the auxiliary vector as it was
    given (auxv is the kernel's copy), the segment bounds (stat, statm) and the command name."""

    arg_start: int = 0
    arg_end: int = 0
    env_start: int = 0
    env_end: int = 0
    start_stack: int = 0
    start_code: int = 0
    end_code: int = 0
    start_data: int = 0
    end_data: int = 0
    auxv: list = field(default_factory=list)   # [key, value] pairs, AT_NULL last
    comm: str = ""                              # the program's base name, 15 bytes at most

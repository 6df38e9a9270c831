"""Wait status words and the wait4/waitid option bits (include/uapi/linux/wait.h).

The status word is the int wait4 stores: exited (code & 0xff) << 8; killed signo, | 0x80 if it
dumped core; stopped (signo << 8) | 0x7f; continued 0xffff. waitid reports the same events as
(si_code, si_status).
"""
from __future__ import annotations

WNOHANG, WUNTRACED, WSTOPPED, WEXITED, WCONTINUED = 1, 2, 2, 4, 8
WNOWAIT, WNOTHREAD, WALL, WCLONE = 0x01000000, 0x20000000, 0x40000000, 0x80000000
WAIT4_OPTIONS = WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WCLONE | WALL
WAITID_OPTIONS = WNOHANG | WNOWAIT | WEXITED | WSTOPPED | WCONTINUED | WNOTHREAD | WCLONE | WALL
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6
SIGCONT = 18
CONTINUED_STATUS = 0xFFFF


def exited(code: int) -> int:
    """The wait status of exit(code)."""
    return (code & 0xFF) << 8


def killed(signo: int, core: bool = False) -> int:
    """The wait status of a death by signal `signo` (0x80: it dumped core)."""
    return signo | (0x80 if core else 0)


def is_exit_status(status: int) -> bool:
    """True for a status wait4 stores for a zombie: exited (code << 8), killed (signo | 0x80)."""
    if type(status) is not int or not 0 <= status <= 0xFFFF:
        return False
    if status & 0x7F == 0:
        return status & 0xFF == 0                 # exited: the code in the second byte
    return status <= 0xFF and status & 0x7F <= 64  # killed: the signal, 0x80 if it dumped core


def siginfo_of(status: int) -> tuple[int, int]:
    """(si_code, si_status) that waitid reports for a status word from wait()."""
    if status == CONTINUED_STATUS:
        return CLD_CONTINUED, SIGCONT
    if status & 0xFF == 0x7F:
        return CLD_STOPPED, status >> 8
    if status & 0x7F == 0:
        return CLD_EXITED, status >> 8
    return (CLD_DUMPED if status & 0x80 else CLD_KILLED), status & 0x7F



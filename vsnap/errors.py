"""Errors and the other exceptions that leave a system call another way. Three families that
never mix:

* SyscallError is the guest's business: a handler raises it, the dispatcher turns it into -errno
  in rax, and the guest sees an ordinary failing system call.
* VsnapError is the user's business: each subclass is one cause, and its message is a single line
  that names the cause and the fix. The CLI prints it and exits with `status`; no traceback.
* ProcessEvent is the scheduler's business: a system call (or a signal) ended the process,
  stopped it, or must wait; the run loop takes it and decides who runs next.
"""
from __future__ import annotations

from .abi import errno as E


class SyscallError(Exception):
    """A system call fails with this errno (a guest-visible Linux error number)."""

    def __init__(self, errno: int, detail: str = ""):
        super().__init__(f"{E.name(errno)}{': ' + detail if detail else ''}")
        self.errno = errno


class VsnapError(Exception):
    """Root of every error a user can cause. str(err) is the one-line message."""

    status = 1


class BadProgram(VsnapError):
    """The program file is not something vsnap can run (not ELF, dynamic, 32-bit, truncated)."""

    status = 126  # what a shell reports for "cannot execute"


class ProgramNotFound(VsnapError):
    status = 127


class BuildFailed(VsnapError):
    """`zig cc` could not compile a guest C program."""


class GuestStopped(VsnapError):
    """The guest was stopped by vsnap (a budget ran out); `status` is the exit status to report."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class UsageError(VsnapError):
    status = 2


class ProcessEvent(Exception):
    """Root of what a system call or a signal does to the process instead of returning."""


class GuestExit(ProcessEvent):
    """The guest called exit or exit_group: stop the CPU, report `status`."""

    def __init__(self, status: int):
        super().__init__(f"exit {status}")
        self.status = status


class KilledBySignal(ProcessEvent):
    """The default action of a signal ends the process (terminate or dump core)."""

    def __init__(self, signo: int, info=None):
        super().__init__(f"signal {signo}")
        self.signo, self.info = signo, info


class StoppedBySignal(ProcessEvent):
    def __init__(self, signo: int):
        super().__init__(f"stopped by signal {signo}")
        self.signo = signo


class NothingToWaitFor(ProcessEvent):
    """The guest waits for a signal, no timer is armed, and nothing outside can send one.
    `what` completes "the guest ..." for the line vsnap prints when it ends the guest."""

    def __init__(self, what: str = "waits for a signal with no timer armed and nothing "
                                   "that could send one"):
        super().__init__(what)
        self.what = what


class Execed(ProcessEvent):
    """execve succeeded: the process runs a new program on new hardware, so the call does
    not return into the old engine (kernel/exec.py)."""


class Blocked(ProcessEvent):
    """The call must wait until `ready()` is true: the process parks at its `syscall`
    instruction, which runs again (and is counted once, when it completes) after the
    scheduler sees `ready()`. `what` names the wait for the deadlock message ("read on a
    pipe"). A parked process is between two instructions, so a save needs nothing more."""

    def __init__(self, what: str, ready, deadline: int | None = None, on_interrupt=None):
        super().__init__(what)
        self.what, self.ready = what, ready
        self.deadline = deadline  # the virtual time (ns) a sleep or timeout ends, if any
        self.on_interrupt = on_interrupt

    def interrupted(self) -> int:
        """What the call returns when a signal ends the wait: -EINTR, or what `on_interrupt`
        says (a write that moved some bytes before it waited returns their count)."""
        return -E.EINTR if self.on_interrupt is None else self.on_interrupt()

"""Errors. Two families that never mix:

* SyscallError is the guest's business: a handler raises it, the dispatcher turns it into -errno
  in rax, and the guest sees an ordinary failing system call.
* VsnapError is the user's business: each subclass is one cause, and its message is a single line
  that names the cause and the fix. The CLI prints it and exits with `status`; no traceback.
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

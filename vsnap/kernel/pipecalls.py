"""pipe and pipe2: a new pipe and two open file descriptions of it, its read end and its
write end (kernel/pipefile.py serves them; vsnap/pipes.py holds the bytes).

Every guest process runs inside vsnap's one host process, so a pipe is never a host pipe:
its buffer is kernel state, saved in a checkpoint image with the bytes it holds.
"""
from __future__ import annotations

import struct

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from .pipefile import PipeEnd, new_pipe
from .registry import syscall

O_NOTIFICATION_PIPE = C.O_EXCL  # a watch-queue pipe (CONFIG_WATCH_QUEUE)
PIPE2_FLAGS = C.O_CLOEXEC | C.O_NONBLOCK | C.O_DIRECT | O_NOTIFICATION_PIPE


def make_pipe(p, flags: int = 0) -> tuple[OpenFile, OpenFile]:
    """The read end and the write end of a new pipe. The read end takes O_NONBLOCK from
    `flags`, the write end O_NONBLOCK and O_DIRECT (packet mode), as create_pipe_files."""
    pipe = new_pipe(p)
    name = f"pipe:[{pipe.ino}]"
    rd = OpenFile("pipe", name, C.O_RDONLY | (flags & C.O_NONBLOCK),
                  ops=PipeEnd(pipe, True, False))
    wr = OpenFile("pipe", name, C.O_WRONLY | (flags & (C.O_NONBLOCK | C.O_DIRECT)),
                  ops=PipeEnd(pipe, False, True))
    return rd, wr


@syscall("pipe", "ptr")
def sys_pipe(p, pipefd):
    """int pipe(int pipefd[2]);"""
    return sys_pipe2(p, pipefd, 0)


@syscall("pipe2", "ptr oflags")
def sys_pipe2(p, pipefd, flags):
    """int pipe2(int pipefd[2], int flags);"""
    flags &= 0xFFFFFFFF
    if flags & ~PIPE2_FLAGS:
        raise SyscallError(E.EINVAL, f"pipe2 flags {flags & ~PIPE2_FLAGS:#o}")
    if flags & O_NOTIFICATION_PIPE:
        # what a Linux built without CONFIG_WATCH_QUEUE answers; vsnap has no watch queues
        p.sys.refuse("pipe2(O_NOTIFICATION_PIPE)", "vsnap: pipe2(O_NOTIFICATION_PIPE): "
                     "watch-queue pipes are not implemented: ENOPKG")
        raise SyscallError(E.ENOPKG, "notification pipes")
    rd, wr = make_pipe(p, flags)
    cloexec = bool(flags & C.O_CLOEXEC)
    fds = []
    try:
        fds.append(p.fds.install(rd, cloexec=cloexec))
        fds.append(p.fds.install(wr, cloexec=cloexec))
        p.write(pipefd, struct.pack("<ii", *fds))  # EFAULT: both descriptors go again
    except SyscallError:
        for fd in fds:
            p.fds.close(fd)
        for f in (rd, wr):
            if f.refs == 0:      # never installed: let its end go here
                f.close()
        raise
    return 0

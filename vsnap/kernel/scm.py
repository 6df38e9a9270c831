"""Ancillary data of sendmsg/recvmsg (net/core/scm.c): SCM_RIGHTS, descriptors that travel
with the bytes, and SCM_CREDENTIALS, the sender's pid, uid and gid.

A sent SCM_RIGHTS names the caller's descriptors; the message holds their open file
descriptions (a reference each) until a receiver installs them as new descriptors of its own
(sharing offsets and status flags, as dup does across processes), or they are thrown away.
The receiver's control buffer decides how many fit: the rest are closed and MSG_CTRUNC says
so, as scm_detach_fds.
"""
from __future__ import annotations

import struct

from ..abi import errno as E
from ..errors import SyscallError
from ..sockets import SCM_MAX_FD, release_files

SOL_SOCKET = 1
SCM_RIGHTS, SCM_CREDENTIALS = 1, 2
CMSG_HDR = 16                           # struct cmsghdr: size_t len; int level; int type
UCRED = 12                              # struct ucred: pid_t, uid_t, gid_t
MSG_CTRUNC = 0x8
MAX_CONTROL = 1 << 20                   # sysctl_optmem_max's order: more is ENOBUFS


def _align(n: int) -> int:
    return (n + 7) & ~7


def parse(p, control: bytes):
    """(descriptions to send, credentials or None) from a sendmsg control buffer
    (__scm_send): every header checked (EINVAL), other levels skipped, bad fds EBADF, lies
    about pid/uid/gid EPERM (the guest holds no CAP_SYS_ADMIN/CAP_SETUID/CAP_SETGID)."""
    files, cred = [], None
    off = 0
    while off + CMSG_HDR <= len(control):
        length, level, kind = struct.unpack_from("<Qii", control, off)
        if length < CMSG_HDR or length > len(control) - off:
            raise SyscallError(E.EINVAL, "bad cmsg_len")
        body = control[off + CMSG_HDR:off + length]
        if level == SOL_SOCKET:
            if kind == SCM_RIGHTS:
                count = len(body) // 4
                if len(files) + count > SCM_MAX_FD:
                    raise SyscallError(E.EINVAL, f"more than {SCM_MAX_FD} descriptors")
                for (fd,) in struct.iter_unpack("<i", body[:count * 4]):
                    files.append(p.fds.get_raw(fd))      # fget_raw: O_PATH ones travel too
            elif kind == SCM_CREDENTIALS:
                if length != CMSG_HDR + UCRED:
                    raise SyscallError(E.EINVAL, "SCM_CREDENTIALS of the wrong size")
                pid, uid, gid = struct.unpack("<iII", body)
                if pid != p.task.pid or uid != p.task.uid or gid != p.task.gid:
                    raise SyscallError(E.EPERM, "SCM_CREDENTIALS that are not the sender's")
                cred = (pid, uid, gid)
            else:
                raise SyscallError(E.EINVAL, f"SOL_SOCKET cmsg type {kind}")
        off += _align(length)
    return files, cred


class ControlOut:
    """A recvmsg control buffer being filled (put_cmsg): what fits, and MSG_CTRUNC."""

    def __init__(self, size: int):
        self.size, self.out, self.flags = size, bytearray(), 0

    def put(self, level: int, kind: int, data: bytes) -> None:
        room = self.size - len(self.out)
        if room < CMSG_HDR:
            self.flags |= MSG_CTRUNC
            return
        rec = struct.pack("<Qii", CMSG_HDR + len(data), level, kind) + data
        if len(rec) > room:
            self.flags |= MSG_CTRUNC
            rec = rec[:room]
        self.out += rec
        self.out += b"\0" * (min(_align(len(rec)), room) - len(rec))

    def rights(self, p, files, cloexec: bool) -> None:
        """scm_detach_fds: install as many descriptions as the buffer holds; close the
        rest (MSG_CTRUNC)."""
        room = self.size - len(self.out)
        fit = max(0, (room - CMSG_HDR) // 4) if room > CMSG_HDR else 0
        fds = []
        try:
            for f in files[:fit]:
                fds.append(p.fds.install(f, cloexec=cloexec))
        except SyscallError:
            pass                                       # EMFILE: what was installed stays
        release_files(files, p.sys.locks)              # the in-flight references
        if len(fds) < len(files) or (files and fit <= 0):
            self.flags |= MSG_CTRUNC
        if fds:
            data = struct.pack(f"<{len(fds)}i", *fds)
            rec = struct.pack("<Qii", CMSG_HDR + len(data), SOL_SOCKET, SCM_RIGHTS) + data
            self.out += rec + b"\0" * (min(_align(len(rec)), room) - len(rec))

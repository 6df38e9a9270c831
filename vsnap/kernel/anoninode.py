"""What eventfd and epoll descriptions share: Linux makes them on its one anonymous inode
(fs/anon_inodes.c), so fstat shows the same inode for all of them (mode 0600 and no file
type bits, owner root, the times of boot), /proc/self/fd names them "anon_inode:[NAME]",
and the calls that would change the inode fail (fchmod, fchown, futimens: EOPNOTSUPP, as
Linux 6.16 on; earlier kernels changed the shared inode). They cannot be reopened through
/proc/self/fd (ENXIO), have no offset (lseek answers 0 and changes nothing, pread ESPIPE),
and take no pipe fcntl (EBADF).

AnonOps is the base of their ops (fdtable.OpenFile.ops); each kind adds read, write, poll,
release, wait_queues and what fdinfo shows.
"""
from __future__ import annotations

import struct

from ..abi import errno as E
from ..abi import consts as C
from ..errors import SyscallError

ANON_DEV = 0x10          # anon_inodefs: a device of its own
ANON_INO = 4000          # its one inode (Linux's is a small number from boot)
ANON_INODE_FS_MAGIC = 0x09041934
MODE = 0o600             # no type bits: fstat shows 0600, S_ISREG and the rest all false
FIONBIO = 0x5421
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
SEEK_MAX = 4             # SEEK_HOLE


class AnonOps:
    seekable = False
    name = "anon"          # anon_inode:[NAME]
    bad_ioctl = E.ENOTTY   # what an ioctl it does not know gives

    def stat(self, p, f) -> dict:
        boot = p.sys.clock.boot_realtime_ns
        return dict(dev=ANON_DEV, ino=ANON_INO, nlink=1, mode=MODE, uid=0, gid=0, rdev=0,
                    size=0, blksize=4096, blocks=0, atime_ns=boot, mtime_ns=boot,
                    ctime_ns=boot)

    def target(self, p, f) -> str:
        return f"anon_inode:[{self.name}]"

    def fdinfo(self, p, f) -> str:
        """Lines /proc/self/fdinfo adds after pos, flags, mnt_id and ino."""
        return ""

    def chmod(self, p, f, mode: int) -> int:
        raise SyscallError(E.EOPNOTSUPP, "the anonymous inode cannot change")

    def chown(self, p, f, uid: int, gid: int) -> int:
        raise SyscallError(E.EOPNOTSUPP, "the anonymous inode cannot change")

    def set_times(self, p, f, atime_ns: int, mtime_ns: int, explicit: bool) -> None:
        raise SyscallError(E.EOPNOTSUPP, "the anonymous inode cannot change")

    def statfs_magic(self) -> int:
        return ANON_INODE_FS_MAGIC

    def reopen(self, p, f, flags: int, status: int):
        raise SyscallError(E.ENXIO, f"{self.target(p, f)} cannot be opened again")

    def llseek(self, p, f, offset: int, whence: int) -> int:
        """noop_llseek: the position stays (0)."""
        if not 0 <= whence <= SEEK_MAX:
            raise SyscallError(E.EINVAL, f"whence {whence}")
        return f.offset

    def fcntl(self, p, f, cmd: int, arg: int) -> int | None:
        if cmd in (F_GETPIPE_SZ, F_SETPIPE_SZ):
            raise SyscallError(E.EBADF, f"{self.target(p, f)} is not a pipe")
        return None

    def ioctl(self, p, f, request: int, argp: int) -> int:
        if request == FIONBIO:  # the one generic ioctl these see (do_vfs_ioctl)
            (on,) = struct.unpack("<i", p.read(argp, 4))
            f.flags = f.flags | C.O_NONBLOCK if on else f.flags & ~C.O_NONBLOCK
            return 0
        raise SyscallError(self.bad_ioctl, f"ioctl {request:#x} on {self.target(p, f)}")

"""statfs and fstatfs: what the guest's file system says about itself.

The numbers are vsnap's, not the host's, so that they are the same on every machine and in every
run: the sandbox is an ext4 file system of a fixed 16 GiB (4 KiB blocks) with 8 GiB and half its
inodes free, mounted noatime (reads never change atime, see inodetimes.py). They do not follow
what the guest writes, and the host's disk may fill before they say so (then a write fails with
ENOSPC, as it would). The virtual /dev and /proc say tmpfs and proc; the console says pipefs or
devpts, as Linux does for a pipe or a terminal.
"""
from __future__ import annotations

from ..abi import consts as C
from ..abi import structs
from .fsutil import GUEST_DEV, lookup, must_exist, s32
from .registry import syscall

BLOCK = 4096
BLOCKS = (16 << 30) // BLOCK
INODES = 1 << 20

_FIXED = dict(bsize=BLOCK, frsize=BLOCK, namelen=255, fsid=(GUEST_DEV, 0),
              flags=C.ST_VALID | C.ST_NOATIME)
SANDBOX = dict(_FIXED, ftype=C.EXT4_SUPER_MAGIC, blocks=BLOCKS, bfree=BLOCKS // 2,
               bavail=BLOCKS // 2, files=INODES, ffree=INODES // 2)
# the kernel's own file systems: no blocks, no free space
_VIRTUAL = dict(_FIXED, blocks=0, bfree=0, bavail=0, files=0, ffree=0)


def _virtual(ftype: int) -> dict:
    return dict(_VIRTUAL, ftype=ftype, flags=C.ST_VALID)


def _of_virtual(guest: str) -> dict:
    """By where the name lives: /proc is procfs, /dev/pts devpts, the rest of /dev devtmpfs
    (which says tmpfs)."""
    if guest == "/proc" or guest.startswith("/proc/"):
        return _virtual(C.PROC_SUPER_MAGIC)
    if guest == "/dev/pts" or guest.startswith("/dev/pts/"):
        return _virtual(C.DEVPTS_SUPER_MAGIC)
    return _virtual(C.TMPFS_MAGIC)


@syscall("statfs", "path ptr")
def sys_statfs(p, path, buf):
    """int statfs(const char *path, struct statfs *buf);"""
    r = must_exist(lookup(p, C.AT_FDCWD, path))
    p.write(buf, structs.pack_statfs(**(_of_virtual(r.guest) if r.special else SANDBOX)))
    return 0


@syscall("fstatfs", "fd ptr")
def sys_fstatfs(p, fd, buf):
    """int fstatfs(int fd, struct statfs *buf);"""
    f = p.fds.get(s32(fd))
    if f.ops is not None:  # a pipe: pipefs
        fields = _virtual(f.ops.statfs_magic())
    elif f.kind == "file" or (f.kind == "dir" and f.host_path):
        fields = SANDBOX
    elif f.kind == "dir":
        fields = _of_virtual(f.path)
    elif f.kind == "console":
        tty = f.stream == "tty" or p.sys.console.isatty(f.stream)
        fields = _virtual(C.DEVPTS_SUPER_MAGIC if tty else C.PIPEFS_MAGIC)
    elif f.kind == "proc":
        fields = _virtual(C.PROC_SUPER_MAGIC)
    else:
        fields = _virtual(C.TMPFS_MAGIC)
    p.write(buf, structs.pack_statfs(**fields))
    return 0

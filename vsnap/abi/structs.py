"""Layouts of the x86-64 Linux structures the kernel writes into guest memory."""
from __future__ import annotations

import struct

# struct stat (x86-64, 144 bytes): dev ino nlink mode uid gid pad rdev size blksize blocks
# atime atime_ns mtime mtime_ns ctime ctime_ns, 3 reserved longs
_STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")
STAT_SIZE = _STAT.size


def pack_stat(*, dev, ino, nlink, mode, uid, gid, rdev, size, blksize, blocks,
              atime_ns, mtime_ns, ctime_ns) -> bytes:
    return _STAT.pack(dev, ino, nlink, mode, uid, gid, 0, rdev, size, blksize, blocks,
                      atime_ns // 10**9, atime_ns % 10**9, mtime_ns // 10**9, mtime_ns % 10**9,
                      ctime_ns // 10**9, ctime_ns % 10**9)


# struct statx (256 bytes)
_STATX = struct.Struct("<IIQIIIHxxQQQQ" + "qIxxxx" * 4 + "IIII" + "QQ" + "96x")
STATX_BASIC_STATS = 0x7FF


def pack_statx(*, ino, nlink, mode, uid, gid, size, blksize, blocks, atime_ns, mtime_ns,
               ctime_ns, rdev_major=0, rdev_minor=0, dev_major=0, dev_minor=1) -> bytes:
    t = lambda ns: (ns // 10**9, ns % 10**9)  # noqa: E731
    return _STATX.pack(STATX_BASIC_STATS, blksize, 0, nlink, uid, gid, mode, ino, size, blocks,
                       0, *t(atime_ns), *t(ctime_ns), *t(ctime_ns), *t(mtime_ns),
                       rdev_major, rdev_minor, dev_major, dev_minor, 0, 0)


def pack_timespec(ns: int) -> bytes:
    return struct.pack("<qq", ns // 10**9, ns % 10**9)


def unpack_timespec(data: bytes) -> int:
    sec, nsec = struct.unpack("<qq", data)
    return sec * 10**9 + nsec


def pack_timeval(ns: int) -> bytes:
    return struct.pack("<qq", ns // 10**9, (ns % 10**9) // 1000)


def unpack_timeval(data: bytes) -> tuple[int, int]:
    """(tv_sec, tv_usec) of a struct timeval, unchecked."""
    return struct.unpack("<qq", data)


# struct statfs (x86-64, 120 bytes): f_type f_bsize f_blocks f_bfree f_bavail f_files f_ffree
# f_fsid[2] f_namelen f_frsize f_flags f_spare[4]
_STATFS = struct.Struct("<qqQQQQQiiqqq32x")


def pack_statfs(*, ftype, bsize, blocks, bfree, bavail, files, ffree, fsid, namelen, frsize,
                flags) -> bytes:
    return _STATFS.pack(ftype, bsize, blocks, bfree, bavail, files, ffree, fsid[0], fsid[1],
                        namelen, frsize, flags)


def pack_utsname(sysname, nodename, release, version, machine, domain) -> bytes:
    return b"".join(s.encode()[:64].ljust(65, b"\0")
                    for s in (sysname, nodename, release, version, machine, domain))


def pack_dirent64(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    reclen = (19 + len(name) + 1 + 7) & ~7
    return struct.pack("<QqHB", ino, off, reclen, dtype) + name + b"\0" * (reclen - 19 - len(name))


def pack_winsize(rows: int, cols: int) -> bytes:
    return struct.pack("<HHHH", rows, cols, 0, 0)


def pack_rlimit(cur: int, maximum: int) -> bytes:
    return struct.pack("<QQ", cur, maximum)


def pack_sysinfo(uptime_s: int, totalram: int, freeram: int, procs: int) -> bytes:
    # long uptime; ulong loads[3]; totalram freeram sharedram bufferram totalswap freeswap;
    # ushort procs; pad; ulong totalhigh freehigh; uint mem_unit; padding to 112 bytes
    return struct.pack("<q3Q6QH6xQQI4x", uptime_s, 0, 0, 0, totalram, freeram, 0, 0, 0, 0,
                       procs, 0, 0, 1)

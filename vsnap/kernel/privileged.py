"""What an unprivileged user may ask about privilege, and may not do: capget and capset (the
guest, uid 1000, holds no capabilities), sethostname and setdomainname (EPERM, as Linux
answers a user without CAP_SYS_ADMIN)."""
from __future__ import annotations

import struct

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from .fsutil import s32
from .registry import syscall

CAP_V1, CAP_V2, CAP_V3 = 0x19980330, 0x20071026, 0x20080522
WORDS = {CAP_V1: 1, CAP_V2: 2, CAP_V3: 2}  # 32-bit words per set in each version
LAST_WORD_VALID = 0x1FF  # bits 32..40 (CAP_LAST_CAP 40): higher ones are dropped, as Linux


def _words(p, hdrp: int) -> int:
    """cap_validate_magic: the number of words the header's version carries; an unknown
    version is answered with the one this kernel prefers, written back into the header."""
    version = struct.unpack("<I", p.read(hdrp, 4))[0]
    if version not in WORDS:
        p.write(hdrp, struct.pack("<I", CAP_V3))
        raise SyscallError(E.EINVAL, f"capability version {version:#x}")
    return WORDS[version]


def _pid(p, hdrp: int) -> int:
    return s32(struct.unpack("<I", p.read(hdrp + 4, 4))[0])


@syscall("capget", "ptr ptr")
def sys_capget(p, hdrp, datap):
    """int capget(cap_user_header_t hdrp, cap_user_data_t datap);"""
    try:
        words = _words(p, hdrp)
    except SyscallError as e:
        if e.errno == E.EINVAL and datap == 0:
            return 0  # probing for the version: libcap asks this way
        raise
    if datap == 0:
        return 0
    pid = _pid(p, hdrp)
    if pid < 0:
        raise SyscallError(E.EINVAL, f"pid {pid}")
    if pid not in (0, p.task.pid):
        raise SyscallError(E.ESRCH, f"no process {pid}")
    # effective, permitted, inheritable: all empty for an ordinary user's process
    p.write(datap, bytes(12 * words))
    return 0


@syscall("capset", "ptr ptr")
def sys_capset(p, hdrp, datap):
    """int capset(cap_user_header_t hdrp, const cap_user_data_t datap);"""
    words = _words(p, hdrp)
    pid = _pid(p, hdrp)
    if pid not in (0, p.task.pid):
        raise SyscallError(E.EPERM, "capset on another process")
    data = struct.unpack(f"<{3 * words}I", p.read(datap, 12 * words))
    sets = [data[i::3] for i in range(3)]  # effective, permitted, inheritable
    for s in sets:
        low = s[0]
        high = s[1] & LAST_WORD_VALID if words > 1 else 0
        if low or high:  # none may grow beyond what the process holds: nothing
            raise SyscallError(E.EPERM, "capset: an unprivileged process holds no capability")
    return 0  # all three sets empty: what they already are


def _no_admin(p, name, length, what: str) -> int:
    raise SyscallError(E.EPERM, f"{what}: the guest is an ordinary user (no CAP_SYS_ADMIN)")


@syscall("sethostname", "ptr size")
def sys_sethostname(p, name, length):
    """int sethostname(const char *name, size_t len);"""
    return _no_admin(p, name, length, "sethostname")


@syscall("setdomainname", "ptr size")
def sys_setdomainname(p, name, length):
    """int setdomainname(const char *name, size_t len);"""
    return _no_admin(p, name, length, "setdomainname")


@syscall("chroot", "path")
def sys_chroot(p, path):
    """int chroot(const char *path);  (the guest's uid 1000 lacks CAP_SYS_CHROOT: EPERM,
    after the path's own errors, in Linux's order)"""
    from .fsutil import lookup, must_exist
    from .paths import is_dir
    r = must_exist(lookup(p, C.AT_FDCWD, path))
    if not is_dir(r):
        raise SyscallError(E.ENOTDIR, r.guest)
    raise SyscallError(E.EPERM, "chroot needs CAP_SYS_CHROOT")

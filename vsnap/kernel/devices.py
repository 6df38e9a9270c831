"""The virtual /dev: character devices and the standard links, as Linux's devtmpfs shows them.

    null     reads end at once, writes vanish          1,3
    zero     reads give zeros, writes vanish           1,5   (mmap: anonymous memory)
    full     reads give zeros, writes fail ENOSPC      1,7
    random   the guest's seeded stream (getrandom's)   1,8
    urandom  the same stream                           1,9
    tty      the controlling terminal: vsnap's own     5,0
    pts/0    the terminal itself (what ttyname finds)  136,0
    stdin, stdout, stderr -> /proc/self/fd/0..2        fd -> /proc/self/fd

A device opens as an OpenFile of kind "dev" whose `stream` names it (null and tty keep their
older kinds, "null" and "console"): a checkpoint saves the name and restore opens it again.
Nothing here reads the host's /dev.
"""
from __future__ import annotations

import stat as S

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..fdtable import OpenFile
from ..vfs import VNode

# name -> (major, minor, permission bits)
DEVICES = {"null": (1, 3, 0o666), "zero": (1, 5, 0o666), "full": (1, 7, 0o666),
           "random": (1, 8, 0o666), "urandom": (1, 9, 0o666), "tty": (5, 0, 0o666)}
LINKS = {"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
         "stderr": "/proc/self/fd/2", "fd": "/proc/self/fd"}
STREAMS = ("zero", "full", "random", "urandom")   # the devices of kind "dev"
MAX_READ = 1 << 24


def node(parts: list[str]) -> VNode | None:
    """The VNode of /dev/... (parts without "dev")."""
    if not parts or parts == ["pts"]:
        return VNode("dir", is_dir=True)
    if parts == ["pts", "0"]:
        return VNode("pts")
    if len(parts) > 1:
        return None
    name = parts[0]
    if name in DEVICES:
        return VNode(name)
    if name in LINKS:
        return VNode("link", link=LINKS[name], jump=LINKS[name])
    return None


def entries(parts: list[str]) -> list[tuple[str, int]] | None:
    """(name, d_type) of /dev or /dev/pts (parts without "dev"), sorted by name."""
    if parts == ["pts"]:
        return [("0", C.DT_CHR)]
    if parts:
        return None
    out = [(n, C.DT_CHR) for n in DEVICES] + [(n, C.DT_LNK) for n in LINKS]
    return sorted(out + [("pts", C.DT_DIR)])


def stat_mode(name: str) -> tuple[int, int]:
    """(st_mode, st_rdev) of a device."""
    if name == "pts":  # as fstat of a console stream that is a terminal says
        return S.S_IFCHR | 0o620, (136 << 8) | 0
    major, minor, perm = DEVICES[name]
    return S.S_IFCHR | perm, (major << 8) | minor


def open_device(p, name: str, guest: str, status: int) -> OpenFile:
    if name == "null":
        return OpenFile("null", guest, status)
    if name in ("tty", "pts"):
        return OpenFile("console", guest, status, stream="tty")
    return OpenFile("dev", guest, status, stream=name)


def read(p, f: OpenFile, count: int) -> bytes:
    count = min(count, MAX_READ)
    if f.stream in ("zero", "full"):
        return bytes(count)
    if f.stream in ("random", "urandom"):
        return p.sys.random.bytes(count)   # the same stream as getrandom and AT_RANDOM
    raise SyscallError(E.EINVAL, f"{f.path}: no such device")


def write(p, f: OpenFile, data: bytes) -> int:
    if f.stream == "full":
        raise SyscallError(E.ENOSPC, f.path)
    if f.stream in ("zero", "random", "urandom"):
        # writing to random adds entropy on Linux; a seeded stream takes none: dropped, as
        # the writes of an unprivileged process change no count either
        return len(data)
    raise SyscallError(E.EINVAL, f"{f.path}: no such device")

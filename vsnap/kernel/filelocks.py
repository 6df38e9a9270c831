"""File locks: flock, fcntl's record locks (F_GETLK/F_SETLK/F_SETLKW, the F_OFD_ forms) and
leases (F_SETLEASE/F_GETLEASE, broken by a conflicting open), over the books in vsnap/locks.py.

Files are keyed by the host's (dev, ino), so every description of a file agrees. With one
process, a request can only conflict with a lock of another description of the same file
(flock, OFD locks, leases); a blocking request that conflicts could only be released by a
signal handler, so it waits for a signal like pause(), and is a reported deadlock if none
can come (kernel/signal.wait_forever).
"""
from __future__ import annotations

import os
import struct

from .. import signals as S
from ..abi import consts as C
from ..abi import errno as E
from ..abi import syscalls
from ..errors import Blocked, SyscallError
from ..locks import (F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, Lease, RecordLock,
                     WouldBlock)
from .fsutil import host_errors, s32
from .registry import syscall
from .sigframe import RESTARTABLE
from .signal import wait_for_signal, wait_forever

LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN, LOCK_MAND = 1, 2, 4, 8, 32
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_SETLEASE, F_GETLEASE = 1024, 1025
LOCK_COMMANDS = {C.F_GETLK, C.F_SETLK, C.F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW,
                 F_SETLEASE, F_GETLEASE}
LEASE_BREAK_NS = 45 * 10**9  # /proc/sys/fs/lease-break-time's default
SIGIO, SI_KERNEL = 29, 0x80
FLOCK = struct.Struct("<hhxxxxqqi4x")  # struct flock: l_type, l_whence, l_start, l_len, l_pid
TYPE_NAMES = {F_RDLCK: "F_RDLCK", F_WRLCK: "F_WRLCK", F_UNLCK: "F_UNLCK"}

# a wait for a lock (or for a lease to break, in open) is restarted after an SA_RESTART
# handler, as Linux's -ERESTARTSYS is
RESTARTABLE.update(syscalls.NUMBERS[n] for n in ("flock", "fcntl", "open", "openat", "creat"))


def file_key(f):
    """Which file a description is: the host's (dev, ino), or its name for vsnap's own."""
    if f.host_fd is not None:
        with host_errors():
            st = os.fstat(f.host_fd)
        return (st.st_dev, st.st_ino)
    return ("virtual", f.kind, f.stream or f.path)


def closed(p, f, last: bool) -> None:
    """FdTable's close hook: closing any descriptor of a file drops the process's POSIX locks
    on it; closing a description's last one drops its flock lock, OFD locks and lease."""
    book = p.sys.locks
    if book.empty():
        return
    book.drop_records(file_key(f), p)
    if last:
        book.drop_owner(f)


def _block(p, what: str) -> None:
    wait_forever(p, what)
    raise SyscallError(E.EINTR, "interrupted by a signal")


# flock -----------------------------------------------------------------------------------------
@syscall("flock", "fd hex")
def sys_flock(p, fd, operation):
    """int flock(int fd, int operation);"""
    op = operation & 0xFFFFFFFF
    if op & LOCK_MAND:
        return 0  # Linux ignores LOCK_MAND (removed in 5.15) and returns 0, with a warning
    type_ = {LOCK_SH: F_RDLCK, LOCK_EX: F_WRLCK, LOCK_UN: F_UNLCK}.get(op & ~LOCK_NB)
    if type_ is None:
        raise SyscallError(E.EINVAL, f"flock operation {op:#x}")
    f = p.fds.get(s32(fd))
    try:
        p.sys.locks.flock(file_key(f), f, type_)
    except WouldBlock:
        if op & LOCK_NB:
            raise SyscallError(E.EAGAIN, "another description holds a conflicting lock")
        if len(p.sys.processes) > 1:  # another process may let go of it: wait for that
            key, book, sig = file_key(f), p.sys.locks, p.signals
            raise Blocked(f"flock waits for {f.path}", lambda: sig.deliverable()
                          or book.flock_free(key, f, type_))
        _block(p, f"waits in flock for {f.path}, locked through another of its own open "
                  f"file descriptions")
    return 0


# record locks ----------------------------------------------------------------------------------
def _range(p, f, whence: int, start: int, length: int) -> tuple[int, int]:
    """[start, end] of a struct flock (flock64_to_posix_lock)."""
    if whence == C.SEEK_SET:
        base = 0
    elif whence == C.SEEK_CUR:
        base = f.offset
    elif whence == C.SEEK_END:
        if f.host_fd is not None and f.kind == "file":
            with host_errors():
                base = os.fstat(f.host_fd).st_size
        else:
            base = len(f.data or b"") if f.kind == "proc" else 0
    else:
        raise SyscallError(E.EINVAL, f"l_whence {whence}")
    if start > OFFSET_MAX - base:
        raise SyscallError(E.EOVERFLOW, "l_start")
    start += base
    if start < 0:
        raise SyscallError(E.EINVAL, "negative start")
    if length > 0:
        if length - 1 > OFFSET_MAX - start:
            raise SyscallError(E.EOVERFLOW, "l_len")
        return start, start + length - 1
    if length < 0:
        if start + length < 0:
            raise SyscallError(E.EINVAL, "l_len reaches before the file")
        return start + length, start - 1
    return start, OFFSET_MAX


def _getlk(p, f, cmd: int, arg: int, raw: bytes) -> int:
    l_type, whence, start, length, pid = FLOCK.unpack(raw)
    if l_type not in (F_RDLCK, F_WRLCK):
        raise SyscallError(E.EINVAL, f"l_type {l_type}")
    lo, hi = _range(p, f, whence, start, length)
    owner = p  # a process's POSIX locks are its own (not its children's): it owns them
    if cmd == F_OFD_GETLK:
        if pid != 0:
            raise SyscallError(E.EINVAL, "l_pid must be 0 for OFD locks")
        owner = f
    fl = p.sys.locks.test(file_key(f), owner, l_type, lo, hi)
    if fl is None:
        out = struct.pack("<h", F_UNLCK) + raw[2:]  # only l_type changes
    else:
        out = FLOCK.pack(fl.type, C.SEEK_SET, fl.start,
                         0 if fl.end == OFFSET_MAX else fl.end - fl.start + 1,
                         -1 if fl.ofd else fl.owner.task.pid)
    p.write(arg, out)
    return 0


def _setlk(p, f, cmd: int, raw: bytes) -> int:
    l_type, whence, start, length, pid = FLOCK.unpack(raw)
    lo, hi = _range(p, f, whence, start, length)
    if l_type not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise SyscallError(E.EINVAL, f"l_type {l_type}")
    acc = f.flags & C.O_ACCMODE
    if (l_type == F_RDLCK and acc == C.O_WRONLY) or (l_type == F_WRLCK and acc == C.O_RDONLY):
        raise SyscallError(E.EBADF, f"{TYPE_NAMES[l_type]} on {f.path} opened without that "
                                    f"access")
    ofd = cmd in (F_OFD_SETLK, F_OFD_SETLKW)
    if ofd and pid != 0:
        raise SyscallError(E.EINVAL, "l_pid must be 0 for OFD locks")
    try:
        p.sys.locks.set(file_key(f), f if ofd else p, l_type, lo, hi, ofd)
    except WouldBlock as e:
        if cmd in (C.F_SETLK, F_OFD_SETLK):
            raise SyscallError(E.EAGAIN, "a conflicting lock is held")
        if len(p.sys.processes) > 1:  # another process may let go of it: wait for that
            key, owner, book, sig = file_key(f), f if ofd else p, p.sys.locks, p.signals
            raise Blocked(f"fcntl waits for a lock on {f.path}", lambda: sig.deliverable()
                          or book.test(key, owner, l_type, lo, hi) is None)
        whose = "an OFD lock of another description" if e.lock.ofd else "the process's lock"
        _block(p, f"waits in fcntl for a lock on {f.path} that {whose} of its own holds")
    return 0


# leases ----------------------------------------------------------------------------------------
def _opens(p, key) -> tuple[int, int]:
    """(descriptions open for writing, descriptions open read-only) of the file."""
    writers = readers = 0
    for d in p.fds.descriptions():
        if d.kind == "file" and file_key(d) == key:
            if d.flags & C.O_ACCMODE == C.O_RDONLY:
                readers += 1
            else:
                writers += 1
    return writers, readers


def _setlease(p, f, arg: int) -> int:
    # only the file's owner may take a lease; every file in the sandbox is the guest's
    if f.kind != "file":
        raise SyscallError(E.EINVAL, "leases are for regular files")
    if arg not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise SyscallError(E.EINVAL, f"lease type {arg}")
    key, book = file_key(f), p.sys.locks
    if arg == F_UNLCK:
        try:
            book.set_lease(key, f, F_UNLCK)
        except LookupError:
            raise SyscallError(E.EAGAIN, "no lease to remove") from None
        return 0
    book.expire(key, p.sys.clock.monotonic_ns)
    writers, readers = _opens(p, key)
    if arg == F_RDLCK and writers:
        raise SyscallError(E.EAGAIN, "the file is open for writing")
    if arg == F_WRLCK:
        mine_w = int(f.flags & C.O_ACCMODE != C.O_RDONLY)
        if (writers, readers) != (mine_w, 1 - mine_w):
            raise SyscallError(E.EAGAIN, "the file is open through another description")
    try:
        book.set_lease(key, f, arg)
    except WouldBlock:
        raise SyscallError(E.EAGAIN, "another description holds a lease") from None
    return 0


def _getlease(p, f) -> int:
    key = file_key(f)
    p.sys.locks.expire(key, p.sys.clock.monotonic_ns)
    lease = p.sys.locks.lease_of(key, f)
    return F_UNLCK if lease is None else lease.target


def break_leases(p, key, flags: int) -> None:
    """An open of a file that has leases (__break_lease): tell the holders (SIGIO, to this
    process: it holds them all), then wait until they give way or lease-break-time passes on
    the virtual clock. O_NONBLOCK: EWOULDBLOCK instead of waiting; a signal: EINTR."""
    book = p.sys.locks
    if key not in book.leases:
        return
    book.expire(key, p.sys.clock.monotonic_ns)
    want_write = flags & C.O_ACCMODE != C.O_RDONLY
    if not book.conflicting_leases(key, want_write):
        return
    for _ in book.start_break(key, want_write, p.sys.clock.monotonic_ns + LEASE_BREAK_NS):
        p.signals.post(S.SigInfo(SIGIO, SI_KERNEL))
    if flags & C.O_NONBLOCK:
        raise SyscallError(E.EAGAIN, "the file has a lease being broken")
    while True:
        pending = book.conflicting_leases(key, want_write)
        if not pending:
            return
        if wait_for_signal(p, until=min(le.deadline_ns for le in pending)):
            raise SyscallError(E.EINTR, "interrupted by a signal")
        book.expire(key, p.sys.clock.monotonic_ns)


def fcntl_lock(p, f, cmd: int, arg: int) -> int:
    """The lock and lease commands of fcntl (kernel/files.py sends them here)."""
    if cmd == F_GETLEASE:
        return _getlease(p, f)
    if cmd == F_SETLEASE:
        return _setlease(p, f, s32(arg))
    raw = p.read(arg, FLOCK.size)
    if cmd in (C.F_GETLK, F_OFD_GETLK):
        return _getlk(p, f, cmd, arg, raw)
    return _setlk(p, f, cmd, raw)


# the checkpoint image --------------------------------------------------------------------------
def locks_record(p, descs: list) -> dict:
    """The lock books for fds.json, naming descriptions by their index in `descs`."""
    book = p.sys.locks
    index = {id(d): i for i, d in enumerate(descs)}
    of_key: dict = {}
    for i, d in enumerate(descs):
        of_key.setdefault(file_key(d), i)
    flocks = [{"description": index[id(o)], "type": t}
              for held in book.flocks.values() for o, t in held]
    records = [{"owner": "description" if fl.ofd else "process",
                **({} if fl.ofd else {"pid": fl.owner.task.pid}),
                "description": index[id(fl.owner)] if fl.ofd else of_key[key],
                "type": fl.type, "start": hex(fl.start), "end": hex(fl.end)}
               for key, held in book.records.items() for fl in held]
    leases = [{"description": index[id(le.owner)], "type": le.type, "breaking": le.breaking,
               "deadline_ns": le.deadline_ns}
              for held in book.leases.values() for le in held]
    return {"flock": flocks, "records": records, "leases": leases}


def restore_locks(p, rec: dict, files: list) -> None:
    """Rebuild the books from a parsed record (image.py checked it) and the reopened files."""
    book = p.sys.locks
    for e in rec.get("flock", []):
        f = files[e["description"]]
        book.flocks.setdefault(file_key(f), []).append((f, e["type"]))
    for e in rec.get("records", []):
        f = files[e["description"]]
        ofd = e["owner"] == "description"
        book.records.setdefault(file_key(f), []).append(
            RecordLock(f if ofd else p.sys.processes.get(e.get("pid"), p), e["type"],
                       e["start"], e["end"], ofd))
    for e in rec.get("leases", []):
        f = files[e["description"]]
        book.leases.setdefault(file_key(f), []).append(
            Lease(f, e["type"], e["breaking"], e["deadline_ns"]))


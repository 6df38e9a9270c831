"""A guest process dies of a signal whose default action dumps core (SIGSEGV, SIGABRT,
SIGQUIT...): what is left of it, as Linux leaves it with the default core_pattern "core".

Linux (fs/coredump.c, binfmt_elf.c) writes the core only if the process is dumpable
(PR_SET_DUMPABLE 1) and its RLIMIT_CORE is at least a page (min_coredump), to a file named
"core" in the dying process's working directory (core_uses_pid 0). Since Linux 4.2 an existing
"core" is unlinked first and the new one made with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600: a
symlink named core is never followed and a hard link's other names are never written; the old
link goes and a new file takes the name. The dump fails (no core, and WCOREDUMP clear in the
parent's wait status) when the directory cannot be written, "core" is a directory, or the
umask took bits from 0600 (the empty file stays, as on Linux). Everything in vsnap's root
belongs to the guest, so the owner checks of Linux always pass. Linux stops writing at the
limit; vsnap writes the first RLIMIT_CORE bytes of the core (Linux counts only the bytes it
writes, not the holes of all-zero pages, so its truncated cores differ from vsnap's).

The core is made from the live process (corerecord.py), not from a checkpoint: a process
holding what an image cannot (a socket, a vfork child in its memory) dumps core like any other,
and the others run on. `vsnap run --core FILE` is the user's `ulimit -c unlimited` (its RLIMIT_CORE
goes up to the hard limit, so the guest's cwd gets its "core" as on Linux) and also writes the
core on the host, at FILE for the first process and FILE.PID for another.
"""
from __future__ import annotations

import os
import stat as S

from .abi import signals as SIG
from .abi.consts import RLIMIT_CORE
from .corerecord import of_process
from .errors import SyscallError

MIN_COREDUMP = 4096  # binfmt_elf's min_coredump: a smaller RLIMIT_CORE dumps nothing
CORE = "core"        # /proc/sys/kernel/core_pattern, Linux's default


def saver(path: str, notice):
    """--save-on-crash: an on_crash hook that saves the whole machine at the faulting
    instruction, before the signal kills the guest."""
    def crashed(m, fault) -> None:
        from .snapshot import checkpoint
        checkpoint(m, path)
        notice(f"vsnap: saved the crashed guest to {path} (rip={fault.rip:#x}); vsnap inspect "
               f"it, vsnap patch it, vsnap resume it")
    return crashed


def dying(m, p, fault) -> None:
    """p dies of fault.signal, whose default dumps core, whole at the instruction it dies at:
    remember why (an image saved now says so), run --save-on-crash, dump the core. Sets
    p.core_dumped, which the wait status's core bit reports (sched.wait_status)."""
    p.crash = {"signal": fault.signal, "code": fault.code, "rip": fault.rip,
               "address": fault.address}
    if m.on_crash is not None:
        m.on_crash(m, fault)
    dump_core(m, p, SIG.NUMBERS[fault.signal])


def dump_core(m, p, signo: int) -> None:
    p.core_dumped = False
    limit = p.limits.soft(RLIMIT_CORE)
    host = m.core_file
    notice = m.system.notice
    if p.task.dumpable != 1 or limit < MIN_COREDUMP:
        if host:  # a guest may refuse cores (gpg, ssh keep secrets)
            why = "is not dumpable (PR_SET_DUMPABLE)" if p.task.dumpable != 1 else \
                "set its RLIMIT_CORE to 0" if limit == 0 else \
                f"set its RLIMIT_CORE to {limit}, less than a page"
            notice(f"vsnap: no core file: the guest {why}")
        return
    from .snapshot.coredump import core_bytes
    data = core_bytes(of_process(p), signo)[:limit]  # Linux stops the dump at the limit
    where = write_in_root(p, data)
    p.core_dumped = where is not None
    if host:
        path = host if p is m.system.init else f"{host}.{p.task.pid}"
        tmp = path + ".tmp"  # atomically: a crash of vsnap leaves no half core
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        also = f" (and {where} in the root)" if where else \
            " (none in the root: its working directory refused it)"
        notice(f"vsnap: wrote core file {path}{also}; gdb {p.exe_host} {path}")


def write_in_root(p, data: bytes) -> str | None:
    """Write `data` as "core" in p's working directory by Linux's rules (the module's
    docstring); the core's guest path, or None where Linux would write none."""
    from .kernel import perm
    from .kernel.fsutil import creds, touch, touch_parent
    if p.task.cwd_removed is not None:  # a removed directory takes no new names
        return None
    try:
        r = p.sys.vfs.resolve(CORE, p.task.cwd, follow=False, creds=creds(p))
        if r.special or r.host is None:  # /proc, /dev: nothing can be created there
            return None
        perm.may_change_dir(p, r)  # unlink the old one, create the new: w and x on the dir
    except SyscallError:
        return None
    try:
        if r.exists:
            if S.S_ISDIR(os.lstat(r.host).st_mode):
                return None  # unlink fails (EISDIR), so does O_EXCL
            os.unlink(r.host)
        fd = os.open(r.host, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        mode = 0o600 & ~p.task.umask
        os.fchmod(fd, mode)
        touch_parent(p, r.host)
        if mode != 0o600:  # Linux: "(i_mode & 0677) != 0600" refuses; the empty file stays
            touch(p, fd, atime=True)
            return None
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        touch(p, fd, atime=True)
    except OSError:
        return None
    finally:
        os.close(fd)
    return r.guest

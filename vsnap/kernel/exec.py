"""execve and execveat: the process runs another program, keeping its pid, fds (not those
marked close-on-exec), signal mask, ignored signals, limits, interval timers and cwd, as
execve(2) lists. The program must lie inside the sandbox root (or be /proc/self/exe) and be
a static x86-64 ELF, or a `#!` script whose interpreter is one.

The new program gets a new engine and address space (hardware.py); the old ones are let go
once the engine has stopped (the call is served from inside its syscall hook).
"""
from __future__ import annotations

import copy
import os
import struct

from .. import signals as S
from ..abi import consts as C
from ..abi import errno as E
from ..cpu import HWCAP
from ..errors import BadProgram, Execed, SyscallError
from ..loader import build_stack, load_segments, read_program
from ..memory import PAGE
from ..task import ExecLayout
from ..timers import Timers
from .dirref import resolve
from .fsutil import creds, s32
from .perm import MAY_EXEC, require
from .registry import syscall

MAX_ARG_STRLEN = 32 * PAGE   # one argument or environment string (binfmts.h)
MAX_ARG_STRINGS = 0x7FFFFFFF
BINPRM_BUF_SIZE = 256        # the #! line is read from this many first bytes
# what read_program refuses that Linux would still run (a dynamic loader, 32-bit mode):
# those refusals are vsnap's, and named once; the rest are ENOEXEC on Linux too
LINUX_RUNS = ("dynamically linked", "32-bit")
MAX_INTERP_DEPTH = 4         # #! scripts nested deeper fail with ELOOP (fs/exec.c)


@syscall("execve", "path ptr ptr")
def sys_execve(p, pathname, argv, envp):
    """int execve(const char *pathname, char *const argv[], char *const envp[]);"""
    return _execve(p, C.AT_FDCWD, pathname, argv, envp, 0)


@syscall("execveat", "fd path ptr ptr hex")
def sys_execveat(p, dirfd, pathname, argv, envp, flags):
    """int execveat(int dirfd, const char *pathname, char *const argv[],
                    char *const envp[], int flags);"""
    return _execve(p, s32(dirfd), pathname, argv, envp, s32(flags))


def _strings(p, addr: int, what: str) -> list[bytes]:
    """A NULL-terminated array of strings in guest memory (argv or envp); NULL: none."""
    out: list[bytes] = []
    while addr:
        (ptr,) = struct.unpack("<Q", p.read(addr + 8 * len(out), 8))
        if not ptr:
            break
        if len(out) >= MAX_ARG_STRINGS:
            raise SyscallError(E.E2BIG, f"too many {what} strings")
        try:
            out.append(p.read_cstr(ptr, MAX_ARG_STRLEN))
        except SyscallError as e:
            if e.errno == E.ENAMETOOLONG:
                raise SyscallError(E.E2BIG, f"an {what} string longer than "
                                   f"{MAX_ARG_STRLEN}") from None
            raise
    return out


def _execve(p, dirfd: int, path_ptr: int, argv_ptr: int, envp_ptr: int, flags: int):
    if flags & ~(C.AT_EMPTY_PATH | C.AT_SYMLINK_NOFOLLOW):
        raise SyscallError(E.EINVAL, f"execveat flags {flags:#x}")
    path = p.read_path(path_ptr)
    argv = _strings(p, argv_ptr, "argument")
    envp = _strings(p, envp_ptr, "environment")
    total = sum(len(s) + 1 + 8 for s in argv + envp)
    if total > max(p.limits.soft(C.RLIMIT_STACK) // 4, 32 * PAGE):
        raise SyscallError(E.E2BIG, f"arguments and environment take {total} bytes")
    # the name a #! interpreter is given: through a directory fd it is /dev/fd/N/path (fs/
    # exec.c), and one the new program could not open (N is close-on-exec) fails a script
    shown, hidden = path, False
    if not path and flags & C.AT_EMPTY_PATH:
        f = p.fds.get_raw(dirfd)  # fexecve: the file open at dirfd
        host, guest = _open_file_paths(p, f)
        shown, hidden = f"/dev/fd/{dirfd}", p.fds.entry(dirfd).cloexec
    else:
        if not path:
            raise SyscallError(E.ENOENT, "empty path")
        host, guest = _find(p, dirfd, path, follow=not flags & C.AT_SYMLINK_NOFOLLOW)
        if dirfd != C.AT_FDCWD and not path.startswith("/"):
            shown, hidden = f"/dev/fd/{dirfd}/{path}", p.fds.entry(dirfd).cloexec
    comm = os.path.basename(shown or guest)  # the name exec gives: the file as it was named
    for _ in range(MAX_INTERP_DEPTH + 1):
        with open(host, "rb") as fh:
            head = fh.read(BINPRM_BUF_SIZE)
        if head[:2] != b"#!":
            break
        if hidden:
            raise SyscallError(E.ENOENT, f"{shown}: the interpreter could not open it")
        interp, arg = _shebang(head, guest)
        argv = [interp.encode()] + ([arg] if arg else []) + [shown.encode()] + argv[1:]
        host, guest = _find(p, C.AT_FDCWD, interp, follow=True)
        shown, hidden = interp, False
    else:
        raise SyscallError(E.ELOOP, f"{path}: #! interpreters nested too deep")
    try:
        prog = read_program(host)
    except BadProgram as e:
        why = str(e).split(": ", 1)[-1]
        if any(w in why for w in LINUX_RUNS):  # Linux would run it; vsnap cannot: say so
            p.sys.refuse(f"execve({guest})", f"vsnap: exec of {guest} failed: {why}")
        raise SyscallError(E.ENOEXEC, str(e)) from None
    replace_image(p, prog, host, guest, argv, envp, comm)
    raise Execed()


def _find(p, dirfd: int, path: str, *, follow: bool) -> tuple[str, str]:
    """(host path, guest path) of an executable file, or the errno Linux gives."""
    r = resolve(p, dirfd, path, follow=follow, creds=creds(p))
    if not r.exists:
        raise SyscallError(E.ENOENT, path)
    if r.special is not None:
        if r.special == "exe":  # /proc/self/exe: the program this process runs
            return p.exe_host, p.exe_guest or "/proc/self/exe"
        raise SyscallError(E.EACCES, f"{path}: not a regular file")
    st = os.stat(r.host) if follow else os.lstat(r.host)
    if not follow and (st.st_mode & 0o170000) == 0o120000:
        raise SyscallError(E.ELOOP, f"{path}: a symbolic link (AT_SYMLINK_NOFOLLOW)")
    if (st.st_mode & 0o170000) != 0o100000:
        raise SyscallError(E.EACCES, f"{path}: not a regular file")
    require(p, st.st_mode, MAY_EXEC, r.guest)
    if not st.st_mode & 0o111:
        raise SyscallError(E.EACCES, f"{path}: no execute permission")
    return r.host, r.guest


def _open_file_paths(p, f) -> tuple[str, str]:
    if f.kind == "exe":
        return p.exe_host, p.exe_guest or "/proc/self/exe"
    if f.kind not in ("file", "path") or f.host_path is None:
        raise SyscallError(E.EACCES, "fd is not a regular file")
    st = os.stat(f.host_path)
    require(p, st.st_mode, MAY_EXEC, f.path)
    return f.host_path, f.path


def _shebang(head: bytes, guest: str) -> tuple[str, bytes]:
    """The interpreter and its one optional argument from a `#!` line (fs/binfmt_script.c:
    blanks around them dropped, the rest of the line one argument)."""
    line = head[2:].split(b"\n", 1)[0]
    if b"\n" not in head[2:] and len(head) == BINPRM_BUF_SIZE and b" " not in line.strip():
        raise SyscallError(E.ENOEXEC, f"{guest}: #! line too long")
    line = line.strip(b" \t")
    if not line:
        raise SyscallError(E.ENOEXEC, f"{guest}: #! with no interpreter")
    parts = line.split(None, 1)
    interp = os.fsdecode(parts[0])
    arg = parts[1].strip(b" \t") if len(parts) > 1 else b""
    return interp, arg


def replace_image(p, prog, host: str, guest: str, argv: list[bytes], envp: list[bytes],
                  comm: str) -> None:
    """The point of no return: p runs `prog` from its entry, on new hardware."""
    from ..hardware import new_hardware
    from ..sched import detach_borrower, wire
    cpu, mem = new_hardware(p.mem.limit)
    layout = ExecLayout()
    load_segments(prog, mem, guest)
    sp = build_stack(prog, mem, [os.fsdecode(a) for a in argv], [os.fsdecode(e) for e in envp],
                     p.sys.random.bytes(16), HWCAP, guest, p.limits.soft(C.RLIMIT_STACK),
                     layout=layout)
    cpu.write_many({"rsp": sp, "rip": prog.base + prog.entry, "rflags": 0x202})
    cpu.watch_rdtsc(prog.rdtsc_candidates())
    p.cpu.stop()
    if p.borrowed_from is not None:  # a vfork child lets go of its parent's hardware
        p.give_back = (detach_borrower(p, p.cpu), p.cpu)
    else:
        p.retired_hardware.append((p.cpu, p.mem))
        p.base_instructions += p.cpu.instructions
    p.cpu, p.mem, p.program = cpu, mem, prog
    wire(p)
    p.exe_host, p.exe_guest = host, guest
    p.exec = layout
    p.exec.comm = comm[:15]
    p.task.exe = guest
    for fd in [fd for fd, e in p.fds.fds.items() if e.cloexec]:
        p.fds.close(fd)
    sig = p.signals
    sig.actions = {n: S.Action(S.SIG_IGN) for n, a in sig.actions.items()
                   if a.handler == S.SIG_IGN}
    sig.altstack_sp, sig.altstack_size, sig.altstack_flags = 0, 0, S.SS_DISABLE
    sig.saved_blocked = None
    itimers = copy.deepcopy(p.timers.itimers)
    p.timers = Timers(itimers=itimers)  # POSIX timers go; interval timers stay
    p.timers.refresh()
    p.sys.table.exec(p.task.pid)
    p.execd = True

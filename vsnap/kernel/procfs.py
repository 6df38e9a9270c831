"""The virtual /proc: the guest's own process, in Linux's formats, made from vsnap's state.

    /proc/self -> 1000              /proc/mounts -> self/mounts     /proc/thread-self
    /proc/1000/  cmdline environ auxv status stat statm maps smaps comm mounts mountinfo
                 exe cwd root (links)   fd/N (links)   fdinfo/N   map_files/START-END (links)
                 task/1000/ (the same files again: one thread)

There is one process, the guest, with the kernel's pid (process.GUEST_PID unless changed);
any other pid is ENOENT. A file's bytes are made when it is opened (an OpenFile of kind "proc"
holding them), so reading it is reproducible and a checkpoint saves exactly what the guest was
reading. Numbers Linux takes from hardware or the scheduler come from vsnap's books: every
mapped page counts as resident, times are the virtual clock's, there is one CPU. Only comm can
be written (it renames the process); the name lives in the process's exec, which images keep.
"""
from __future__ import annotations

import os
import stat as S

from ..abi import consts as C
from ..abi import errno as E
from ..errors import SyscallError
from ..memory import PAGE, PROT_EXEC, PROT_READ, PROT_WRITE
from ..signals import SI_TKILL, SIG_DFL, SIG_IGN, bit
from ..vfs import VNode
from . import procsys

PID_FILES = ("auxv", "cmdline", "comm", "environ", "maps", "mountinfo", "mounts", "smaps",
             "stat", "statm", "status")
PID_LINKS = ("cwd", "exe", "root")
PID_DIRS = ("fd", "fdinfo", "map_files", "task")
PRIVATE = ("auxv", "environ")        # mode 0400 on Linux; the rest of the files 0444
MOUNT_ID = 1                         # the one mount: the sandbox root
CLK_TCK = 100
RLIM_INFINITY = (1 << 64) - 1
LOW31 = 0x7FFF_FFFF


# the namespace --------------------------------------------------------------------------------
def node(p, parts: list[str]) -> VNode | None:
    """The VNode of /proc/... (parts without "proc")."""
    pid = str(p.task.pid)
    if not parts:
        return VNode("dir", is_dir=True)
    head, rest = parts[0], parts[1:]
    if head == "self" and not rest:
        return VNode("link", link=pid, jump=pid)
    if head == "thread-self" and not rest:
        return VNode("link", link=f"{pid}/task/{pid}", jump=f"{pid}/task/{pid}")
    if head == "mounts" and not rest:
        return VNode("link", link="self/mounts", jump="self/mounts")
    if head == pid:
        return _pid_node(p, rest, task=False)
    if head == "sys":  # where core files go (procsys.py)
        return procsys.node(rest)
    return None


def _pid_node(p, parts: list[str], *, task: bool) -> VNode | None:
    if not parts:
        return VNode("dir", is_dir=True)
    name, rest = parts[0], parts[1:]
    if name == "task" and not task:
        if not rest:
            return VNode("dir", is_dir=True)
        if rest[0] == str(p.task.pid):
            return _pid_node(p, rest[1:], task=True)
        return None
    if name in PID_FILES:
        return None if rest else VNode("proc:" + name)
    if name in PID_LINKS:
        return None if rest else _link(p, name)
    if name in ("fd", "fdinfo", "map_files"):
        if not rest:
            return VNode("dir", is_dir=True)
        if len(rest) > 1:
            return None
        if name == "map_files":
            return _map_file(p, rest[0])
        fd = _fd_number(rest[0])
        if fd is None or fd not in p.fds.fds:
            return None
        return fd_link(p, fd) if name == "fd" else VNode(f"proc:fdinfo:{fd}")
    return None


def _fd_number(text: str) -> int | None:
    return int(text) if text.isdigit() and text == str(int(text)) else None


def _link(p, name: str) -> VNode:
    if name == "cwd":
        from .dirref import proc_link
        # a removed cwd has no path to walk (vsnap does not follow it: ENOTDIR inside it)
        return VNode("link", link=proc_link(p), jump=None if p.task.cwd_removed else p.task.cwd)
    if name == "root":
        return VNode("link", link="/", jump="/")
    exe_guest, exe_host = p.exe_guest, p.exe_host
    if exe_guest is not None:
        return VNode("link", link=exe_guest, jump=exe_guest)
    # The program lies outside the root: the link names its host path, as Linux names a file
    # outside a chroot, and following it opens the program read-only (vsnap reads it anyway).
    return VNode("exe", link=exe_host or "", jump=None)


def fd_target(p, f) -> tuple[str, bool]:
    """What readlink(/proc/self/fd/N) gives for an open file, and whether that text is a path
    that leads back to the same file."""
    if f.ops is not None:  # pipe:[ino]
        return f.ops.target(p, f), False
    if f.kind in ("file", "dir") and f.host_fd is not None:
        try:  # a ghost restored from an image has no host name at all
            mine = os.fstat(f.host_fd)
            # no link left (nlink 0): deleted, even if opened through a name that still leads
            # to it (a removed directory's "/proc/self/fd/N/.", kernel/dirref.py)
            named = (os.stat(f.host_path, follow_symlinks=False)
                     if f.host_path and mine.st_nlink else None)
            same = named is not None and (mine.st_dev, mine.st_ino) == (named.st_dev,
                                                                        named.st_ino)
        except OSError:
            same = False
        return (f.path, True) if same else (f.path + " (deleted)", False)
    if f.kind == "exe":
        return p.exe_host or "", False
    if f.kind == "console" and f.stream != "tty":
        if p.sys.console.isatty(f.stream):
            return "/dev/pts/0", False
        return f"pipe:[{console_ino(f.stream)}]", False
    return f.path, True     # /dev/null, /dev/zero, /dev/tty, /proc files, virtual dirs


def fd_link(p, fd: int) -> VNode:
    text, is_path = fd_target(p, p.fds.fds[fd].file)
    return VNode(f"fd:{fd}", link=text, jump=text if is_path else None)


def console_ino(stream: str) -> int:
    """The inode of the pipe a console stream is (st_ino and pipe:[N] agree)."""
    return 4096 + ("stdin", "stdout", "stderr").index(stream) if stream in (
        "stdin", "stdout", "stderr") else 4099


def _file_vmas(p):
    return [v for v in p.mem.vmas if v.name.startswith("/")]


def _map_file(p, name: str) -> VNode | None:
    for v in _file_vmas(p):
        if name == f"{v.start:x}-{v.end:x}":
            # readlink works for the process itself; following one needs
            # CAP_CHECKPOINT_RESTORE on Linux, which the guest (uid 1000) does not have
            return VNode("map_file", link=v.name, jump=None)
    return None


def entries(p, parts: list[str]) -> list[tuple[str, int]] | None:
    """(name, d_type) in a /proc directory, in Linux's order for fd directories and by name
    elsewhere; None if `parts` is not a directory."""
    pid = str(p.task.pid)
    if not parts:
        return [("mounts", C.DT_LNK), ("self", C.DT_LNK), ("sys", C.DT_DIR),
                ("thread-self", C.DT_LNK), (pid, C.DT_DIR)]
    if parts[0] == "sys":
        return procsys.entries(parts[1:])
    if parts[0] != pid:
        return None
    parts = parts[1:]
    if parts[:1] == ["task"]:
        if len(parts) == 1:
            return [(pid, C.DT_DIR)]
        if parts[1] != pid:
            return None
        parts = parts[2:]
        task = True
    else:
        task = False
    if not parts:
        out = [(n, C.DT_REG) for n in PID_FILES] + [(n, C.DT_LNK) for n in PID_LINKS]
        out += [(n, C.DT_DIR) for n in PID_DIRS if not (task and n == "task")]
        return sorted(out)
    if parts == ["fd"]:
        return [(str(fd), C.DT_LNK) for fd in sorted(p.fds.fds)]
    if parts == ["fdinfo"]:
        return [(str(fd), C.DT_REG) for fd in sorted(p.fds.fds)]
    if parts == ["map_files"]:
        return [(f"{v.start:x}-{v.end:x}", C.DT_LNK) for v in _file_vmas(p)]
    return None


def stat_mode(p, r) -> tuple[int, int]:
    """(st_mode, st_size) of a /proc node that is not followed somewhere else."""
    special, name = r.special, r.guest.rsplit("/", 1)[-1]
    if special == "dir":
        private = name in ("fd", "map_files")
        return S.S_IFDIR | (0o500 if private else 0o555), 0
    if special == "link":
        parent = r.guest.rsplit("/", 2)[-2]
        if parent == "fd":
            acc = p.fds.fds[int(name)].file.flags & C.O_ACCMODE if int(name) in p.fds.fds else 2
            return S.S_IFLNK | {C.O_RDONLY: 0o500, C.O_WRONLY: 0o300}.get(acc, 0o700), 64
        if parent == "map_files":
            return S.S_IFLNK | 0o400, 64
        return S.S_IFLNK | 0o777, 0
    writable = name == "comm" or special.startswith("proc:sys/")  # sys: root's, 0644
    return S.S_IFREG | (0o400 if name in PRIVATE else 0o644 if writable else 0o444), 0


# the files -------------------------------------------------------------------------------------
def content(p, special: str) -> bytes:
    """The bytes of a /proc file, made now."""
    name = special.split(":", 1)[1]
    if name.startswith("fdinfo:"):
        return _fdinfo(p, int(name.split(":")[1]))
    if name.startswith("sys/"):
        return procsys.content(name)
    return _MAKERS[name](p)


def write(p, f, data: bytes) -> int:
    """A write to a /proc file opened for writing: only comm can be. Linux keeps the first 15
    bytes as they are (a trailing newline included) and takes the whole count."""
    if not f.path.endswith("/comm"):
        raise SyscallError(E.EINVAL, f.path)
    p.exec.comm = data[:15].split(b"\0")[0].decode("utf-8", "surrogateescape")
    return len(data)


def _guest_bytes(p, start: int, end: int) -> bytes:
    if end <= start:
        return b""
    try:
        return p.mem.read(start, end - start)
    except Exception:  # the guest unmapped its own stack strings: Linux reads nothing too
        return b""


def _cmdline(p) -> bytes:
    return _guest_bytes(p, p.exec.arg_start, p.exec.arg_end)


def _environ(p) -> bytes:
    return _guest_bytes(p, p.exec.env_start, p.exec.env_end)


def _auxv(p) -> bytes:
    return b"".join(key.to_bytes(8, "little") + val.to_bytes(8, "little")
                    for key, val in p.exec.auxv)


def _comm(p) -> bytes:
    return p.exec.comm.encode() + b"\n"


def _mounts(p) -> bytes:
    return b"vsnap / vsnap rw,relatime 0 0\n"


def _mountinfo(p) -> bytes:
    # one mount, the sandbox root (st_dev 8:1 everywhere, /dev and /proc included)
    return f"{MOUNT_ID} {MOUNT_ID} 8:1 / / rw,relatime - vsnap vsnap rw\n".encode()


def _maps(p) -> bytes:
    def inode(f):  # the guest's number for a mapped file, as stat gives it
        got = p.sys.inodes.get(f.key)
        return got if got is not None else p.sys.guest_inode(os.fstat(f.fd), f.path)
    return p.mem.maps_text(inode).encode()


def _sizes(p) -> dict:
    """Linux's mm counters in bytes, from the VMAs (every mapped page is resident)."""
    total = stack = text = data = filed = 0
    for v in p.mem.vmas:
        total += v.size
        if v.kind == "stack":
            stack += v.size
        elif v.prot & PROT_WRITE:
            data += v.size              # VmData: private writable, not the stack
        if v.kind in ("text", "text*") and v.prot & PROT_EXEC:
            text += v.size
        if v.name.startswith("/") and v.kind not in ("bss", "heap"):
            filed += v.size
    return {"size": total, "stack": stack, "text": text, "data": data, "file": filed,
            "anon": total - filed}


def _kb(n: int) -> str:
    return f"{n >> 10:8d} kB"


def _sigmasks(p) -> dict:
    s = p.signals
    thread = shared = 0
    for tk in s.pending:
        if tk.code == SI_TKILL or tk.code > 0:   # tkill/tgkill and faults are the thread's own
            thread |= bit(tk.signo)
        else:
            shared |= bit(tk.signo)
    ign = cgt = 0
    for n, a in s.actions.items():
        if a.handler == SIG_IGN:
            ign |= bit(n)
        elif a.handler != SIG_DFL:
            cgt |= bit(n)
    return {"pnd": thread, "shd": shared, "blk": s.blocked, "ign": ign, "cgt": cgt,
            "queued": len(s.pending)}


def _fdsize(p) -> int:
    top = max(p.fds.fds, default=0)
    if top < 64:
        return 64
    n = top // 128 + 1
    return 128 * (1 << (n - 1).bit_length())


def _status(p) -> bytes:
    tk, z, m = p.task, _sizes(p), _sigmasks(p)
    ids = lambda x: "\t".join([str(x)] * 4)  # noqa: E731  (real, effective, saved, fs)
    lines = [
        f"Name:\t{p.exec.comm}", f"Umask:\t{tk.umask:04o}", "State:\tR (running)",
        f"Tgid:\t{tk.pid}", "Ngid:\t0", f"Pid:\t{tk.pid}", f"PPid:\t{tk.ppid}", "TracerPid:\t0",
        f"Uid:\t{ids(tk.uid)}", f"Gid:\t{ids(tk.gid)}", f"FDSize:\t{_fdsize(p)}",
        f"Groups:\t{tk.gid} ", f"NStgid:\t{tk.pid}", f"NSpid:\t{tk.pid}", f"NSpgid:\t{tk.pgid}",
        f"NSsid:\t{tk.sid}",
        f"VmPeak:\t{_kb(z['size'])}", f"VmSize:\t{_kb(z['size'])}", f"VmLck:\t{_kb(0)}",
        f"VmPin:\t{_kb(0)}", f"VmHWM:\t{_kb(z['size'])}", f"VmRSS:\t{_kb(z['size'])}",
        f"RssAnon:\t{_kb(z['anon'])}", f"RssFile:\t{_kb(z['file'])}",
        f"RssShmem:\t{_kb(0)}", f"VmData:\t{_kb(z['data'])}", f"VmStk:\t{_kb(z['stack'])}",
        f"VmExe:\t{_kb(z['text'])}", f"VmLib:\t{_kb(0)}", f"VmPTE:\t{_kb(0)}",
        f"VmSwap:\t{_kb(0)}", f"HugetlbPages:\t{_kb(0)}", "CoreDumping:\t0", "THP_enabled:\t1",
        "Threads:\t1", f"SigQ:\t{m['queued']}/{RLIM_INFINITY}",
        f"SigPnd:\t{m['pnd']:016x}", f"ShdPnd:\t{m['shd']:016x}", f"SigBlk:\t{m['blk']:016x}",
        f"SigIgn:\t{m['ign']:016x}", f"SigCgt:\t{m['cgt']:016x}",
        f"CapInh:\t{0:016x}", f"CapPrm:\t{0:016x}", f"CapEff:\t{0:016x}",
        f"CapBnd:\t{(1 << 41) - 1:016x}", f"CapAmb:\t{0:016x}", "NoNewPrivs:\t0",
        "Seccomp:\t0", "Seccomp_filters:\t0", "Speculation_Store_Bypass:\tnot vulnerable",
        "SpeculationIndirectBranch:\tunknown", "Cpus_allowed:\t1", "Cpus_allowed_list:\t0",
        "Mems_allowed:\t" + ",".join(["00000000"] * 31 + ["00000001"]),
        "Mems_allowed_list:\t0", "voluntary_ctxt_switches:\t0",
        "nonvoluntary_ctxt_switches:\t0"]
    return ("\n".join(lines) + "\n").encode()


def _stat(p) -> bytes:
    """proc(5)'s 52 fields, in order (the four signal sets are the obsolete 31-bit ones: the
    thread's own pending set, blocked, ignored, caught)."""
    tk, e, z, m = p.task, p.exec, _sizes(p), _sigmasks(p)
    tick = 10**9 // CLK_TCK  # user and system time, as times() counts them
    utime, stime = p.user_ns // tick, p.system_ns // tick
    tty = 0x8800 if any(p.sys.console.isatty(s) for s in ("stdin", "stdout", "stderr")) else 0
    fields = [tk.pid, f"({e.comm})", "R", tk.ppid, tk.pgid, tk.sid, tty, tk.pgid if tty else -1,
              0, 0, 0, 0, 0, utime, stime, 0, 0, 20, 0, 1, 0, 0, z["size"], z["size"] // PAGE,
              RLIM_INFINITY, e.start_code, e.end_code, e.start_stack, 0, 0,
              m["pnd"] & LOW31, m["blk"] & LOW31, m["ign"] & LOW31, m["cgt"] & LOW31,
              0, 0, 0, 17, 0, 0, 0, 0, 0,
              0, e.start_data, e.end_data, p.mem.brk_start, e.arg_start, e.arg_end,
              e.env_start, e.env_end, 0]
    return (" ".join(str(f) for f in fields) + "\n").encode()


def _statm(p) -> bytes:
    z = _sizes(p)
    pages = [z["size"], z["size"], z["file"], z["text"], 0, z["data"] + z["stack"], 0]
    return (" ".join(str(n // PAGE) for n in pages) + "\n").encode()


def _vmflags(v) -> str:
    flags = [f for f, on in (("rd", v.prot & PROT_READ), ("wr", v.prot & PROT_WRITE),
                             ("ex", v.prot & PROT_EXEC), ("mr", 1), ("mw", 1), ("me", 1),
                             ("gd", v.kind == "stack"), ("ac", v.prot & PROT_WRITE)) if on]
    return "VmFlags: " + "".join(f + " " for f in flags)


def _smaps(p) -> bytes:
    maps = p.mem.maps_text().splitlines()
    out = []
    for line, v in zip(maps, p.mem.vmas):
        size = v.size
        anon = 0 if v.name.startswith("/") and v.kind in ("text", "data") else size
        dirty = size if v.prot & PROT_WRITE or v.kind == "text*" else 0
        rows = [("Size", size), ("KernelPageSize", PAGE), ("MMUPageSize", PAGE), ("Rss", size),
                ("Pss", size), ("Pss_Dirty", dirty), ("Shared_Clean", 0), ("Shared_Dirty", 0),
                ("Private_Clean", size - dirty), ("Private_Dirty", dirty),
                ("Referenced", size), ("Anonymous", anon), ("LazyFree", 0),
                ("AnonHugePages", 0), ("ShmemPmdMapped", 0), ("FilePmdMapped", 0),
                ("Shared_Hugetlb", 0), ("Private_Hugetlb", 0), ("Swap", 0), ("SwapPss", 0),
                ("Locked", 0)]
        out.append(line)
        out += [f"{name + ':':<16}{_kb(n)}" for name, n in rows]
        out += [f"THPeligible:    {0:8d}", _vmflags(v)]
    return ("\n".join(out) + "\n").encode()


def _fdinfo(p, fd: int) -> bytes:
    entry = p.fds.fds.get(fd)
    if entry is None:
        return b""
    f = entry.file
    from .files import status_flags
    from .fsutil import stat_of_file
    flags = status_flags(f) | (C.O_CLOEXEC if entry.cloexec else 0)
    ino = stat_of_file(p, f)["ino"]
    more = f.ops.fdinfo(p, f) if getattr(f.ops, "fdinfo", None) else ""  # eventfd, epoll
    return (f"pos:\t{f.offset}\nflags:\t0{flags:o}\nmnt_id:\t{MOUNT_ID}\nino:\t{ino}\n"
            + more).encode()


_MAKERS = {"auxv": _auxv, "cmdline": _cmdline, "comm": _comm, "environ": _environ,
           "maps": _maps, "mountinfo": _mountinfo, "mounts": _mounts, "smaps": _smaps,
           "stat": _stat, "statm": _statm, "status": _status}

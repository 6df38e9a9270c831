"""DragonFly BSD's checkpoints from inside the guest (seeds/003, 004; sys_checkpoint(2)):
the guest asks for its own checkpoint, and can tell a resume from its first run.

    int sys_checkpoint(int type, int fd, pid_t pid, int retval);   (<vsnap/checkpoint.h>)

CKPT_FREEZE saves the guest as `vsnap run --save-at` would, at the instruction after this
call, into `fd` or the checkpoint template; the caller gets 0 and a resume of the image gets
`retval` from the same call (`vsnap resume --retval`, 1 by default). CKPT_THAW replaces the
caller with the checkpoint read from `fd`, like exec. SIGCKPT's and SIGCKPTEXIT's default
actions (kernel/sigframe.py) save to the template too.
"""
from __future__ import annotations

import os

from ..abi import consts as C
from ..abi import errno as E
from ..errors import Execed, SyscallError
from .fsutil import s32
from .registry import syscall

CKPT_FREEZE, CKPT_THAW = 0x1, 0x2


@syscall("vsnap_checkpoint", "hex int int int")
def sys_checkpoint(p, type_, fd, pid, retval):
    """int sys_checkpoint(int type, int fd, pid_t pid, int retval);"""
    type_, fd, pid, retval = s32(type_), s32(fd), s32(pid), s32(retval)
    if type_ == CKPT_FREEZE:
        if pid not in (-1, p.task.pid):
            raise SyscallError(E.EINVAL, f"pid {pid} is neither -1 nor the caller's")
        if fd == -1 and pid == -1:
            save_to_template(p, in_call=True, returns=True)
            return 0
        f = _regular(p, fd, writing=True)
        _freeze_into(p, f)
        return 0
    if type_ == CKPT_THAW:
        if pid != -1:
            raise SyscallError(E.EINVAL, f"pid {pid}: a thaw makes the caller the program")
        f = _regular(p, fd, writing=False)
        thaw(p, f, retval)
        raise Execed()
    raise SyscallError(E.EINVAL, f"checkpoint type {type_:#x} (CKPT_FREEZE 1, CKPT_THAW 2)")


def _regular(p, fd: int, writing: bool):
    """The open regular file at fd, open for writing (or reading): EBADF otherwise."""
    if fd < 0:
        raise SyscallError(E.EBADF, f"fd {fd}")
    f = p.fds.get(fd)
    if f.kind != "file" or f.host_fd is None:
        raise SyscallError(E.EBADF, f"fd {fd} is not a regular file")
    acc = f.flags & C.O_ACCMODE
    if writing and acc == C.O_RDONLY or not writing and acc == C.O_WRONLY:
        raise SyscallError(E.EBADF, f"fd {fd} is not open for {'writing' if writing else 'reading'}")
    return f


def _image(p, *, in_call: bool, returns: bool, bias: int) -> bytes:
    """The image of the guest as it will be just after this moment: from inside a system
    call, at the instruction after it (`bias` 2: Unicorn has not stepped over it yet), with
    that call's result set (`returns`: a resume makes it return the resumer's retval)."""
    from ..errors import VsnapError
    from ..snapshot import image_bytes
    cpu = p.cpu
    rip, saved = cpu.read("rip"), cpu.snapshot_registers()
    if returns:
        cpu.syscall_return(0)  # rcx and r11 as the instruction leaves them
    cpu.write("rip", rip + bias)
    p.ckpt_return = returns
    try:
        return image_bytes(p.sys.machine)
    except VsnapError as e:  # a moment vsnap cannot save (a vfork child in its parent's
        p.sys.notice(str(e))  # memory, say): the call fails, and says why once
        raise SyscallError(E.EBUSY, "vsnap cannot save this guest now") from None
    finally:
        p.ckpt_return = False
        cpu.restore_registers({n: saved[n] for n in ("rip", "rax", "rcx", "r11")})


def _freeze_into(p, f) -> None:
    """Write the image into an open regular file at its offset (its end with O_APPEND); the
    fd stays valid after a resume, pointing after the image (snapshot/inodes.HOLDS_IMAGE)."""
    from ..snapshot import inodes
    st = os.fstat(f.host_fd)
    key = (st.st_dev, st.st_ino)
    inodes.HOLDS_IMAGE.add(key)
    try:
        data = _image(p, in_call=True, returns=True, bias=2)
    finally:
        inodes.HOLDS_IMAGE.discard(key)
    at = st.st_size if f.flags & C.O_APPEND else f.offset
    view = memoryview(data)
    while view:
        n = os.pwrite(f.host_fd, view, at)
        at += n
        view = view[n:]
    f.offset = at


def template_path(p) -> str:
    """The checkpoint template with %N (program name), %P (pid), %U (uid) filled in."""
    name = p.exec.comm or os.path.basename(p.task.exe or "guest")
    out, t = [], p.sys.ckpt_template
    i = 0
    while i < len(t):
        if t[i] == "%" and i + 1 < len(t):
            out.append({"N": name, "P": str(p.task.pid), "U": str(p.task.uid),
                        "%": "%"}.get(t[i + 1], t[i:i + 2]))
            i += 2
        else:
            out.append(t[i])
            i += 1
    return "".join(out)


def save_to_template(p, *, in_call: bool, returns: bool) -> str:
    """Save to the template, a file the guest could create (EACCES, ENOENT... as open
    would say); the guest path written."""
    from .dirref import resolve
    from .fsutil import creds
    guest = template_path(p)
    r = resolve(p, C.AT_FDCWD, guest, follow=True, creds=creds(p))
    if r.host is None:
        raise SyscallError(E.EACCES, f"{guest}: not a file vsnap can write")
    data = _image(p, in_call=in_call, returns=returns, bias=2 if in_call else 0)
    tmp = r.host + ".tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, r.host)
    except OSError as e:
        raise SyscallError(E.EACCES if isinstance(e, PermissionError) else E.EIO,
                           f"{guest}: {e.strerror}") from None
    return r.guest


def thaw(p, f, retval: int) -> None:
    """CKPT_THAW: the checkpoint in f becomes the calling process (its memory, registers,
    files, signal state, program); it keeps its pid, parent, group and session, as
    checkpt -r does. A tree of several processes cannot become one: EINVAL."""
    from ..snapshot.codec import ImageError
    from ..snapshot.restore import restore_bytes
    from ..sched import wire
    st = os.fstat(f.host_fd)
    data = os.pread(f.host_fd, st.st_size, 0)
    try:
        m, _ = restore_bytes(data, root=p.sys.vfs.root, console=p.sys.console,
                             where="the checkpoint", retval=retval)
    except ImageError as e:
        raise SyscallError(E.EINVAL, f"not a checkpoint vsnap can thaw: {e}") from None
    if len(m.system.processes) > 1:
        m.close()
        raise SyscallError(E.EINVAL, "a checkpoint of several processes cannot thaw into one")
    p.cpu.stop()
    old = take_over(p, m.process)
    wire(p)
    old.close_all()
    m.system.processes.clear()  # the loaded machine's own system is dropped
    p.execd = True


def take_over(p, q):
    """A restored process q becomes p: its engine, memory, program, files, signal state,
    limits, timers and exec record move in, and p keeps its pid, parent, group and session
    (CKPT_THAW, as checkpt -r; and `vsnap run --watch --restart-from-checkpoint`). p's old
    fd table is returned, for the caller to close once it is done with it."""
    p.retired_hardware.append((p.cpu, p.mem))
    p.base_instructions += p.cpu.instructions
    ids = (p.task.pid, p.task.ppid, p.task.pgid, p.task.sid)
    old = p.fds
    p.cpu, p.mem, p.program = q.cpu, q.mem, q.program
    p.exe_host, p.exe_guest = q.exe_host, q.exe_guest
    p.fds, p.signals, p.limits, p.timers, p.exec = q.fds, q.signals, q.limits, q.timers, q.exec
    p.fds.on_close = p._closed
    p.task = q.task
    p.task.pid, p.task.ppid, p.task.pgid, p.task.sid = ids
    p.cpu.instructions = 0
    return old


# the signals' default actions (kernel/sigframe.deliver) ----------------------------------------

def on_signal(p, signo: int, in_syscall: bool) -> None:
    """SIGCKPT or SIGCKPTEXIT with SIG_DFL: save to the template, as DragonFly's kernel
    does; a failure to write is said in one line and the process goes on (it did not ask)."""
    try:
        guest = save_to_template(p, in_call=in_syscall, returns=False)
        p.sys.notice(f"vsnap: {'SIGCKPT' if signo == 62 else 'SIGCKPTEXIT'}: saved "
                     f"process {p.task.pid} to {guest}")
    except SyscallError as e:
        p.sys.notice(f"vsnap: {'SIGCKPT' if signo == 62 else 'SIGCKPTEXIT'}: could not save "
                     f"process {p.task.pid}: {e}")


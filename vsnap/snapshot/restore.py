"""Restore: Antonov's "special branch in _main", done by vsnap for the guest.

The seed's steps, in order: a fresh machine from the same program (refused if the program's
hash differs), expand the stack and read the stack and the data segment back, reopen and seek
each file (after checking that it is the file that was saved), restore the registers, resume.
Everything is read and checked before anything is built, so a bad image never leaves a
half-restored guest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace

from ..errors import VsnapError
from ..kernel.dirref import check_cwd
from ..kernel.filelocks import restore_locks
from ..kernel.limits import apply as apply_limits
from ..loader import file_sha256
from ..memory import PAGE
from ..vfs import Sandbox
from . import descriptions, dragonfly, mapped, pipeimage, ttyimage
from .codec import ImageError, read_file
from .image import Image, parse
from .pieces import Mismatch, Unchecked


class FileChanged(VsnapError):
    """A file the saved guest had open is not the file it was."""


@dataclass
class Plan:
    """What restore will do, checked in full before the machine is touched."""

    image: Image
    program: str
    root: str
    warnings: list[str] = field(default_factory=list)


def load(path: str, defer=None) -> Image:
    """Read and check an image (see codec.decode for `defer`)."""
    manifest, parts = read_file(path, defer)
    return parse(manifest, parts, path)


def plan(image: Image, *, root: str | None = None, program: str | None = None,
         force: bool = False, as_dragonfly: bool = False) -> Plan:
    """Check everything a resume needs; with `as_dragonfly`, first change the image as
    DragonFly's checkpt(1) would resume it (dragonfly.py), its notice last in the warnings."""
    notice = dragonfly.apply(image) if as_dragonfly else None
    program = program or image.program["path"]
    try:
        digest = file_sha256(program)
    except OSError as e:
        raise ImageError(f"{image.where}: the program {program} cannot be read "
                         f"({e.strerror}); give its new place with --program") from None
    if digest != image.program["sha256"]:
        raise ImageError(f"{image.where}: {program} is not the program that was saved "
                         f"(its SHA-256 differs); text is re-read from it, so it must be "
                         f"the same build")
    root = os.path.realpath(root or image.kernel["root"])
    if not os.path.isdir(root):
        raise ImageError(f"{image.where}: sandbox root {root} does not exist; "
                         f"give one with --root")
    p = Plan(image, program, root)
    vfs = Sandbox(root)
    for rec in (image.tree or {}).get("processes", [])[1:]:
        rec["host"] = _program_of(image, rec, program, vfs)
    problems = (check_cwd(image.kernel["process"], vfs) + descriptions.check(image, vfs)
                + mapped.check(image, vfs))
    if problems and not force:
        raise FileChanged(f"vsnap: cannot resume {image.where}: {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                          + "; restore the file, or resume with --force to go on anyway")
    p.warnings = [f"vsnap: warning: --force: {msg}; the guest may misbehave"
                  for msg in problems] + ([notice] if notice else [])
    return p


def _program_of(image: Image, rec: dict, first: str, vfs) -> str:
    """The host file a tree's other process runs: by its guest path in the root (it exec'd
    it there), or the first process's program (it was forked from it)."""
    prog = rec["image"]["program"]
    where = f"{image.where} (process {rec['pid']})"
    candidates = []
    if prog["guest_path"]:
        try:
            candidates.append(vfs.resolve(prog["guest_path"], "/").host)
        except Exception:  # a path that no longer resolves: the other candidates
            pass
    candidates += [first, prog["path"]]
    for host in candidates:
        try:
            if host and file_sha256(host) == prog["sha256"]:
                return host
        except OSError:
            continue
    raise ImageError(f"{where}: its program {prog['guest_path'] or prog['path']} is not there "
                     f"or is not the program that was saved (its SHA-256 differs)")


def build(p: Plan, console=None, unchecked: Unchecked | None = None, retval: int = 1,
          size: int | None = None):
    """A running Machine made from a checked plan. With `unchecked` (memory parts the loader
    left unhashed), their bytes are copied into the guest and checked there before it is
    returned (ImageError if they do not match)."""
    from ..machine import Machine
    img = p.image
    m = Machine.blank(p.program, root=p.root, console=console,
                      max_memory=img.kernel["memory_limit"])
    _fill_memory(m, img.vmas, img.blobs, unchecked)
    m.mem.brk_start, m.mem.brk = img.brk_start, img.brk
    _kernel_state(m, img.kernel)
    if m.process.task.pid not in m.system.processes:  # --as-dragonfly's new pid
        dragonfly.adopt(m)
    # reopen and seek each file (after the kernel state: the inode numbers move with them)
    try:
        files = descriptions.restore(m, img)
        mapped.attach(m, img, files)  # file mappings share their clean pages with the file again
    except OSError as e:
        m.close()
        raise FileChanged(f"vsnap: cannot resume {img.where}: a file it had open cannot be "
                          f"opened again ({e.strerror or e}"
                          + (f": {e.filename}" if e.filename else "") + ")") from None
    m.process.fds.high = max([img.locks["highest_fd"], *(e["fd"] for e in img.fds)])
    if img.tree is not None:  # the other processes, the table (before the locks they own)
        _tree(m, img, files, retval)
    restore_locks(m.process, img.locks, files)
    m.cpu.restore_registers(img.registers)
    if img.kernel.get("ckpt_return"):  # saved by sys_checkpoint: the call returns `retval`
        m.cpu.write("rax", retval & (2**64 - 1))
    if size is not None:  # the file a sys_checkpoint wrote this image into: after the image
        for f, d in zip(files, img.descriptions):
            rec = img.inodes[d["inode"]] if "inode" in d else None
            if rec and rec.get("identity", {}).get("holds_image"):
                f.offset = d["offset"] + size
    accounts = img.kernel["accounts"]
    m.system.retired = accounts["retired"]  # instructions of processes ended before the save
    m.cpu.instructions = accounts["own_instructions"]
    if unchecked is not None:
        try:
            unchecked.fill()
        except (Mismatch, OSError) as e:
            m.close()  # the half-made machine is dropped, never handed out
            raise ImageError(f"{img.where}: {e}") from None
    return m


def _fill_memory(m, vmas: list, blobs: dict, unchecked=None) -> None:
    """Expand the stack, read the stack and the data segment back (and the other mappings)
    into the machine's current process."""
    for v in vmas:
        # a process's shared anonymous memory is its own again (tree.processes refuses a
        # tree in which two processes share it)
        m.mem.map(v["start"], v["end"] - v["start"], 3, v["kind"], v["name"],
                  growsdown=v["growsdown"], shared=v["shared"] and "file" not in v)
        if v["source"] == "program":
            m.mem.write(v["start"], m.program.image_bytes(v["start"], v["end"]))
        else:
            blob = blobs[v["part"]]
            for first, count, offset in v["pages"]:
                addr, size = v["start"] + first * PAGE, count * PAGE
                dest = m.mem.ram_view(addr, size) if unchecked is not None else None
                if dest is not None and v["part"] in unchecked.blobs:
                    unchecked.place(v["part"], offset, dest)  # copied below, as it is checked
                else:
                    m.mem.write_bulk(addr, blob[offset:offset + size])
        if v["prot"] != 3:
            m.mem.protect(v["start"], v["end"] - v["start"], v["prot"])


def _tree(m, img, files: list, retval: int = 1) -> None:
    """The other processes of a tree, each on new hardware, and the process table."""
    from ..sched import parked_when_saved
    from ..hardware import new_hardware
    from ..kernel.core import Process
    from ..loader import read_program
    from ..sched import wire
    system, t = m.system, img.tree
    system.table = t["table"]
    system.rr_last, system.forked, system.turn = t["rr_last"], t["forked"], t["turn"]
    system.child_times = dict(t["child_times"])
    init = system.init
    for rec in t["processes"][1:]:
        one = rec["image"]
        cpu, mem = new_hardware(img.kernel["memory_limit"])
        q = Process(system, cpu, mem)
        system.processes[rec["pid"]] = q
        q.program = read_program(rec["host"])
        q.exe_host, q.exe_guest = rec["host"], one["program"]["guest_path"]
        cpu.watch_rdtsc(q.program.rdtsc_candidates())
        m._switch(q)
        _fill_memory(m, one["vmas"], one["blobs"])
        mapped.attach(m, SimpleNamespace(vmas=one["vmas"], blobs=one["blobs"]), files)
        mem.brk_start, mem.brk = one["brk_start"], one["brk"]
        _process_state(q, one["kernel"])
        for e in rec["fds"]:
            q.fds.adopt(e["fd"], files[e["description"]], e["cloexec"])
        q.fds.high = max([rec["highest_fd"], *(e["fd"] for e in rec["fds"])])
        cpu.restore_registers(one["registers"])
        if one["kernel"].get("ckpt_return"):  # its own sys_checkpoint made the image
            cpu.write("rax", retval & (2**64 - 1))
        cpu.instructions = one["kernel"]["accounts"]["own_instructions"]
        wire(q)
    m._switch(init)
    for rec in t["processes"]:
        q = system.processes[rec["pid"]]
        q.memo, q.vfork_child, q.execd = rec["memo"], rec["vfork_child"], rec["execd"]
        if rec["parked"]:
            q.blocked = parked_when_saved()


def _process_state(q, k: dict) -> None:
    """What kernel.json holds of one process (the rest is the system's)."""
    for name, value in k["process"].items():
        setattr(q.task, name, value)
    for name, value in (k.get("exec") or {}).items():
        setattr(q.exec, name, value)
    q.limits, q.timers = k["limits"], k["timers"]
    apply_limits(q)
    q.signals = k["signals"]
    q.syscalls = k["accounts"]["own_syscalls"]
    q.children_ns = list(k["accounts"]["children_ns"])
    q.pending_write = k.get("pending_write")


def _kernel_state(m, k: dict) -> None:
    """kernel.json of the first process: its own state, and the system's."""
    system = m.system
    _process_state(m.process, k)
    system.clock.load(k["clock"], k["instructions"])  # checked when the image was read
    system.random.seed, system.random.counter = k["random"]["seed"], k["random"]["counter"]
    system.inodes = {(dev, ino): guest for dev, ino, guest in k["inodes"]}
    system.ctimes = dict(k["ctimes"])
    system.unknown_reported = set(k["unknown_syscalls_reported"])
    system.refused = dict(k["refused"])
    system.syscall_count = k["syscall_count"]
    pipeimage.restore_kernel(m, k)
    ttyimage.restore_kernel(m, k)


def restore_bytes(data: bytes, *, root=None, program=None, force=False, console=None,
                  where: str = "image", retval: int = 1, as_dragonfly=False):
    """restore() from an image held in memory (vsnap.testing's quick path: no file, no
    fsync); every check is the same."""
    from .codec import decode
    deferred: list[Unchecked] = []
    manifest, parts = decode(data, where, defer=deferred)
    p = plan(parse(manifest, parts, where), root=root, program=program, force=force,
             as_dragonfly=as_dragonfly)
    return build(p, console, deferred[0], retval, len(data)), p.warnings


def restore(path: str, *, root=None, program=None, force=False, console=None,
            retval: int = 1, as_dragonfly=False):
    """Load, check and build: a Machine ready to continue where the image was saved; a
    sys_checkpoint call that made it returns `retval` (`vsnap resume --retval`)."""
    deferred: list[Unchecked] = []
    try:
        p = plan(load(path, deferred), root=root, program=program, force=force,
                 as_dragonfly=as_dragonfly)
        return build(p, console, deferred[0], retval, os.path.getsize(path)), p.warnings
    finally:
        for d in deferred:
            d.close()

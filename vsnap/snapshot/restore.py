"""Restore: Antonov's "special branch in _main", done by vsnap for the guest.

The seed's steps, in order: a fresh machine from the same program (refused if the program's
hash differs), expand the stack and read the stack and the data segment back, reopen and seek
each file (after checking that it is the file that was saved), restore the registers, resume.
Everything is read and checked before anything is built, so a bad image never leaves a
half-restored guest.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field

from ..errors import SyscallError, VsnapError
from ..fdtable import FdEntry, OpenFile
from ..memory import PAGE
from ..vfs import Sandbox
from . import mapped
from .checkpoint import listing_identity
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
         force: bool = False) -> Plan:
    program = program or image.program["path"]
    try:
        with open(program, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
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
    problems = _check_files(image, Sandbox(root))
    if problems and not force:
        raise FileChanged(f"vsnap: cannot resume {image.where}: {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                          + "; restore the file, or resume with --force to go on anyway")
    p.warnings = [f"vsnap: warning: --force: {msg}; the guest may misbehave"
                  for msg in problems]
    return p


def _check_files(image: Image, vfs: Sandbox) -> list[str]:
    problems = []
    named = [{"kind": "file", "path": p, "identity": i} for p, i in mapped.named_files(image)]
    for d in [*image.descriptions, *named]:  # open files, and mapped files with a name
        if d["kind"] not in ("file", "dir") or "ghost" in d:
            continue  # a ghost's bytes are in the image, checked by its hash
        ident = d["identity"]
        try:
            r = vfs.resolve(d["path"], "/", follow=False)
        except SyscallError as e:
            problems.append(f"{d['path']} cannot be reached ({e})")
            continue
        if not r.exists or r.host is None:
            problems.append(f"{d['path']} no longer exists")
            continue
        if d["kind"] == "dir":
            try:
                now = listing_identity(os.listdir(r.host))
            except OSError as e:
                problems.append(f"{d['path']}: {e.strerror}")
                continue
            if now != ident["listing_sha256"]:
                problems.append(f"directory {d['path']} has different entries now")
            continue
        try:
            st = os.stat(r.host, follow_symlinks=False)
            with open(r.host, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            problems.append(f"{d['path']}: {e.strerror}")
            continue
        if st.st_size != ident["size"]:
            problems.append(f"{d['path']} changed size since the save "
                            f"({ident['size']} -> {st.st_size} bytes)")
        elif digest != ident["sha256"]:
            problems.append(f"{d['path']} has different content since the save")
        elif st.st_mtime_ns != ident["mtime_ns"]:
            problems.append(f"{d['path']} was modified since the save (same bytes, new time)")
    return problems


def build(p: Plan, console=None, unchecked: Unchecked | None = None):
    """A running Machine made from a checked plan. With `unchecked` (memory parts the loader
    left unhashed), their bytes are copied into the guest and checked there before it is
    returned (ImageError if they do not match)."""
    from ..machine import Machine
    img = p.image
    m = Machine.blank(p.program, root=p.root, console=console,
                      max_memory=img.kernel["memory_limit"])
    # expand the stack, read the stack and the data segment back (and the other mappings)
    for v in img.vmas:
        m.mem.map(v["start"], v["end"] - v["start"], 3, v["kind"], v["name"],
                  growsdown=v["growsdown"])
        if v["source"] == "program":
            m.mem.write(v["start"], m.program.image_bytes(v["start"], v["end"]))
        else:
            blob = img.blobs[v["part"]]
            for first, count, offset in v["pages"]:
                addr, size = v["start"] + first * PAGE, count * PAGE
                dest = m.mem.ram_view(addr, size) if unchecked is not None else None
                if dest is not None and v["part"] in unchecked.blobs:
                    unchecked.place(v["part"], offset, dest)  # copied below, as it is checked
                else:
                    m.mem.write_bulk(addr, blob[offset:offset + size])
        if v["prot"] != 3:
            m.mem.protect(v["start"], v["end"] - v["start"], v["prot"])
    m.mem.brk_start, m.mem.brk = img.brk_start, img.brk
    # reopen and seek each file
    files = [_reopen(m, d, img.blobs) for d in img.descriptions]
    for entry in img.fds:
        m.kernel.fds.fds[entry["fd"]] = FdEntry(files[entry["description"]], entry["cloexec"])
    mapped.attach(m, img, files)  # file mappings share their clean pages with the file again
    _kernel_state(m, img.kernel)
    m.cpu.restore_registers(img.registers)
    m.instructions = img.kernel["instructions"]
    if unchecked is not None:
        try:
            unchecked.fill()
        except (Mismatch, OSError) as e:
            m.close()  # the half-made machine is dropped, never handed out
            raise ImageError(f"{img.where}: {e}") from None
    return m


def _reopen(m, d: dict, blobs: dict) -> OpenFile:
    f = OpenFile(d["kind"], d["path"], d["flags"], d["offset"], stream=d["stream"])
    if "ghost" in d:
        f.host_fd = _ghost(m.vfs.root, blobs[d["ghost"]], d["identity"])
    elif d["kind"] == "file":
        r = m.vfs.resolve(d["path"], "/", follow=False)
        acc = d["flags"] & 3
        flags = {0: os.O_RDONLY, 1: os.O_WRONLY}.get(acc, os.O_RDWR)
        f.host_path = r.host
        f.host_fd = os.open(r.host, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    elif d["kind"] == "dir" and d["stream"] is None:
        f.host_path = m.vfs.resolve(d["path"], "/", follow=False).host
        f.host_fd = os.open(f.host_path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                            | os.O_CLOEXEC)
    elif d["kind"] == "proc":
        f.data = d["data"]
    return f


def _ghost(root: str, content, ident: dict) -> int:
    """An open, nameless file holding `content`: made in the sandbox root and unlinked at
    once, so the guest sees what it had (a file deleted while open) and nothing is left."""
    fd, name = tempfile.mkstemp(dir=root, prefix=".vsnap-ghost-")
    try:
        os.write(fd, bytes(content))
        os.fchmod(fd, ident["mode"])
        os.utime(fd, ns=(ident["mtime_ns"], ident["mtime_ns"]))
    finally:
        os.unlink(name)
    return fd


def _kernel_state(m, k: dict) -> None:
    kern = m.kernel
    for name, value in k["process"].items():
        setattr(kern.proc, name, value)
    kern.clock.monotonic_ns = k["clock"]["monotonic_ns"]
    kern.clock.boot_realtime_ns = k["clock"]["boot_realtime_ns"]
    kern.random.seed, kern.random.counter = k["random"]["seed"], k["random"]["counter"]
    kern.signals = k["signals"]
    kern.inodes = {(dev, ino): guest for dev, ino, guest in k["inodes"]}
    kern.unknown_reported = set(k["unknown_syscalls_reported"])
    kern.syscall_count = k["syscall_count"]


def restore_bytes(data: bytes, *, root=None, program=None, force=False, console=None,
                  where: str = "image"):
    """restore() from an image held in memory (vsnap.testing's quick path: no file, no
    fsync); every check is the same."""
    from .codec import decode
    deferred: list[Unchecked] = []
    manifest, parts = decode(data, where, defer=deferred)
    p = plan(parse(manifest, parts, where), root=root, program=program, force=force)
    return build(p, console, deferred[0]), p.warnings


def restore(path: str, *, root=None, program=None, force=False, console=None):
    """Load, check and build: a Machine ready to continue where the image was saved."""
    deferred: list[Unchecked] = []
    try:
        p = plan(load(path, deferred), root=root, program=program, force=force)
        return build(p, console, deferred[0]), p.warnings
    finally:
        for d in deferred:
            d.close()

"""Checkpoint (dump): Antonov's save file, taken from a stopped Machine.

His list, in his order: the open files (names, types, offsets), the stack, the data segment,
and the jmp_buf. Here the jmp_buf holds every register (a guest stopped at an arbitrary
instruction has live values in all of them), and beside his parts sit the kernel state a guest
can observe. Text is not copied: restore re-reads it from the program, whose hash is recorded.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict

from ..memory import PAGE, PROT_WRITE
from .codec import dumps, encode, write_atomically
from .fields import hexs

ZERO_PAGE = bytes(PAGE)

# which part of the image each kind of VMA goes to; text comes back from the program file
PART_OF_KIND = {"stack": "memory/stack.bin", "data": "memory/data.bin",
                "bss": "memory/data.bin", "heap": "memory/data.bin",
                "mmap": "memory/mappings.bin"}

NOT_PRESERVED = [
    "Text pages are not in the image: they are re-read from the program file, which must "
    "have the recorded SHA-256.",
    "Descriptors on the terminal (stdin, stdout, stderr, /dev/tty) are reattached to the "
    "terminal of whoever resumes, as DragonFly BSD's checkpoints do; what was typed or "
    "printed is not replayed.",
    "Regular files are reopened by name and must be unchanged (size, modification time, "
    "content hash); a file deleted while open cannot be restored.",
    "The pid, process group and session are kept (DragonFly cannot keep them; vsnap's "
    "pids are virtual). Inode numbers are kept for files seen before the save.",
    "Unicorn's translation cache and host resources (host descriptors, the host pid) are "
    "not part of a process and are made anew.",
]


def program_record(m) -> dict:
    data = m.program.data
    return {"path": m.program_path, "guest_path": m.exe, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "pie": m.program.pie}


def _memory(m) -> tuple[dict, dict[str, bytes]]:
    blobs: dict[str, bytearray] = {}
    vmas = []
    for v in m.mem.vmas:
        rec = {"start": hexs(v.start), "end": hexs(v.end), "perms": v.perms(),
               "kind": v.kind, "name": v.name}
        part = None if v.kind == "text" and not v.prot & PROT_WRITE else PART_OF_KIND.get(
            v.kind, "memory/mappings.bin")
        if part is None:
            rec["source"] = "program"
        else:
            rec["source"] = "image"
            rec["part"] = part
            blob = blobs.setdefault(part, bytearray())
            rec["pages"] = _nonzero_runs(m.mem.read(v.start, v.size), blob)
        vmas.append(rec)
    record = {"vmas": vmas, "brk_start": hexs(m.mem.brk_start), "brk": hexs(m.mem.brk)}
    return record, {name: bytes(b) for name, b in blobs.items()}


def _nonzero_runs(data: bytes, blob: bytearray) -> list[list[int]]:
    """Append the non-zero pages of `data` to `blob`; [[first page, count, blob offset]]."""
    runs: list[list[int]] = []
    view = memoryview(data)
    for i in range(len(data) // PAGE):
        page = view[i * PAGE:(i + 1) * PAGE]
        if page == ZERO_PAGE:
            continue
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1, len(blob)])
        blob += page
    return runs


def file_identity(host_fd: int, host_path: str | None) -> dict:
    """What restore must find again: size, mtime, content hash, and whether it still exists."""
    st = os.fstat(host_fd)
    try:
        named = os.stat(host_path, follow_symlinks=False) if host_path else None
    except OSError:
        named = None
    same = named is not None and (named.st_dev, named.st_ino) == (st.st_dev, st.st_ino)
    h = hashlib.sha256()
    if same:  # the guest's descriptor may be write-only: hash through a descriptor of our own
        fd = os.open(host_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
        finally:
            os.close(fd)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest(),
            "deleted": not same}


def listing_identity(names: list[str]) -> str:
    return hashlib.sha256("\0".join(sorted(names)).encode()).hexdigest()


def _fds(m) -> dict:
    descs = m.kernel.fds.descriptions()
    out = []
    for i, f in enumerate(descs):
        rec = {"id": i, "kind": f.kind, "path": f.path, "flags": f.flags, "offset": f.offset,
               "stream": f.stream}
        if f.kind == "file":
            rec["identity"] = file_identity(f.host_fd, f.host_path)
        elif f.kind == "dir" and f.host_path:
            rec["identity"] = {"listing_sha256": listing_identity(os.listdir(f.host_path))}
        elif f.kind == "proc":
            rec["data"] = (f.data or b"").hex()
        out.append(rec)
    fds = [{"fd": fd, "description": next(i for i, d in enumerate(descs) if d is e.file),
            "cloexec": e.cloexec} for fd, e in sorted(m.kernel.fds.fds.items())]
    return {"descriptions": out, "fds": fds}


def _kernel(m) -> dict:
    k = m.kernel
    return {
        "process": asdict(k.proc),
        "clock": {"monotonic_ns": k.clock.monotonic_ns,
                  "boot_realtime_ns": k.clock.boot_realtime_ns},
        "random": {"seed": hexs(k.random.seed), "counter": k.random.counter},
        "signals": {"actions": {str(n): a.hex() for n, a in sorted(k.sigactions.items())},
                    "mask": hexs(k.sigmask), "altstack": k.sigaltstack.hex()},
        "inodes": [[dev, ino, guest] for (dev, ino), guest in sorted(k.inodes.items())],
        "unknown_syscalls_reported": sorted(k.unknown_reported),
        "syscall_count": k.syscall_count,
        "instructions": m.instructions,
        "memory_limit": m.mem.limit,
        "root": m.vfs.root,
        "not_preserved": NOT_PRESERVED,
    }


def _registers(m) -> dict:
    return {"registers": {name: hexs(v) for name, v in m.cpu.snapshot_registers().items()}}


def image_bytes(m) -> bytes:
    """The whole image of a stopped machine, as the bytes of one file."""
    memory, blobs = _memory(m)
    parts = {"registers.json": dumps(_registers(m)), "fds.json": dumps(_fds(m)),
             "kernel.json": dumps(_kernel(m)), "memory.json": dumps(memory), **blobs}
    return encode(parts, program_record(m))


def checkpoint(m, path: str) -> None:
    """Save machine `m` (stopped between two instructions) to `path`, atomically."""
    if not m.running:
        raise ValueError("the guest has already ended; there is nothing to save")
    write_atomically(path, image_bytes(m))

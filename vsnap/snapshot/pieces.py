"""Parts in pieces: hashed side by side, and copied into the guest as they are checked.

Every part of an image is hashed in pieces of PIECE bytes (a manifest entry lists one SHA-256
per piece), because one SHA-256 stream runs on one core: on this project's two-core machines,
pieces hashed on two threads take half the time (hashlib lets go of the GIL). Restore goes one
step further for memory parts (Unchecked): each worker reads its piece from the image file
straight into guest RAM and hashes that copy, so the copy and the check overlap, and the bytes
the guest will run with are exactly the bytes that were checked.

DragonFly BSD restores differently: "modified private mappings will be mapped from the
checkpoint file itself". vsnap copies, because a private mapping of a file is not private
enough: Linux drops even the copied-on-write pages of such a mapping when the file is
truncated, so `cp other.img saved.img` during a run would kill vsnap with SIGBUS (tried).
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from .extents import FileRanges

PIECE = 16 << 20
THREAD_MIN = 8 << 20  # below this, threads cost more than they save
HASHERS = 2


class Mismatch(Exception):
    """A piece whose bytes do not match its hash (codec turns it into an ImageError)."""

    def __init__(self, name: str, index: int, size: int):
        where = f" (bytes {index * PIECE} to {min((index + 1) * PIECE, size)})" \
            if size > PIECE else ""
        super().__init__(f"part {name}{where} does not match its hash: the image is corrupt "
                         f"or was edited")


def cut(segments: list[tuple[memoryview, int]]) -> list[list[tuple[memoryview, int]]]:
    """Segments (a view, and where it starts in its part), in part order and end to end, cut
    at every multiple of PIECE: the part's pieces, each a list of (view, part offset). An
    empty part is one empty piece."""
    out: list[list[tuple[memoryview, int]]] = [[]]
    for view, at in segments:
        view = memoryview(view).cast("B")
        while view:
            room = PIECE - at % PIECE
            if at and at % PIECE == 0 and out[-1]:
                out.append([])
            out[-1].append((view[:room], at))
            at += len(out[-1][-1][0])
            view = view[room:]
    return out


def end_to_end(chunks: list) -> list[tuple[memoryview, int]]:
    """(view, part offset) for buffers that make up a part in order."""
    out, at = [], 0
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        out.append((view, at))
        at += len(view)
    return out


def _digest(piece) -> str:
    h = hashlib.sha256()
    for view, _ in piece:
        h.update(view)
    return h.hexdigest()


def _run(fn, work: list, size: int) -> list:
    """fn over work items, on HASHERS threads when there is enough to do."""
    if size < THREAD_MIN or len(work) < 2:
        return [fn(item) for item in work]
    with ThreadPoolExecutor(max_workers=HASHERS) as pool:
        return list(pool.map(fn, work))


def digests(parts: dict) -> dict[str, list[str]]:
    """For each part (bytes, a list of buffers in order, or a FileRanges read a chunk at a
    time): the SHA-256 of each piece."""
    streamed = {name: p for name, p in parts.items() if isinstance(p, FileRanges)}
    work = [(name, piece) for name, p in parts.items() if name not in streamed
            for piece in cut(end_to_end(p if isinstance(p, list) else [p]))]
    size = sum(len(view) for _, piece in work for view, _ in piece)
    done = _run(lambda item: _digest(item[1]), work, size)
    out: dict[str, list[str]] = {name: [] for name in parts}
    for (name, _), digest in zip(work, done):
        out[name].append(digest)
    for name, p in streamed.items():
        out[name] = _streamed_digests(p.chunks())
    return out


def _streamed_digests(chunks) -> list[str]:
    """The pieces' digests of a part given as a stream of chunks (one pass, one chunk held)."""
    out, h, filled = [], hashlib.sha256(), 0
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view:
            take = min(len(view), PIECE - filled)
            h.update(view[:take])
            filled, view = filled + take, view[take:]
            if filled == PIECE:
                out.append(h.hexdigest())
                h, filled = hashlib.sha256(), 0
    if filled or not out:
        out.append(h.hexdigest())
    return out


def check(parts: dict, listed: dict) -> None:
    """Raise Mismatch for the first piece of `parts` that does not match the manifest."""
    _compare(digests(parts), listed)


def _compare(got: dict[str, list[str]], listed: dict) -> None:
    for name, digests_ in got.items():
        for i, (digest, want) in enumerate(zip(digests_, listed[name]["sha256"])):
            if digest != want:
                raise Mismatch(name, i, listed[name]["size"])


class Unchecked:
    """Memory parts that decode read but did not hash. Restore says where each run of a part
    goes in guest RAM (place); fill() then copies and checks them all, and raises Mismatch if
    a piece is wrong (the caller drops the half-made machine, which never ran)."""

    def __init__(self, blobs: dict, listed: dict, fd: int | None = None,
                 offsets: dict | None = None):
        self.blobs = blobs            # name -> view of the part's bytes in the image
        self.listed = listed          # the manifest's entries
        self.fd = fd                  # the image file, read with preadv when given
        self.offsets = offsets or {}  # name -> where the part's bytes start in the file
        self.placed: dict[str, list[tuple[memoryview, int]]] = {n: [] for n in blobs}

    def place(self, name: str, offset: int, dest: memoryview) -> None:
        """Bytes [offset, offset+len(dest)) of part `name` belong at `dest` (guest RAM)."""
        self.placed[name].append((memoryview(dest).cast("B"), offset))

    def _copy(self, name: str, dest: memoryview, at: int) -> None:
        if self.fd is not None and name in self.offsets:
            if os.preadv(self.fd, [dest], self.offsets[name] + at) != len(dest):
                raise OSError("the image file became shorter while it was read")
        else:
            dest[:] = self.blobs[name][at:at + len(dest)]

    def _fill_piece(self, item) -> str:
        name, into_guest, piece = item
        h = hashlib.sha256()
        for view, at in piece:
            if into_guest:
                self._copy(name, view, at)
            h.update(view)
        return h.hexdigest()

    def fill(self) -> None:
        work = []
        for name, placed in self.placed.items():
            placed.sort(key=lambda p: p[1])
            at = 0
            for dest, offset in placed:
                at = at + len(dest) if offset == at else -1
            if at == len(self.blobs[name]):
                # the runs lay the part out end to end, each byte once: copy and hash it
                # piece by piece, in guest RAM
                work += [(name, True, piece) for piece in cut(placed)]
            else:
                # an image laid out some other way (vsnap never writes one): copy run by
                # run, then hash the image's bytes
                for dest, offset in placed:
                    self._copy(name, dest, offset)
                work += [(name, False, piece) for piece in cut(end_to_end([self.blobs[name]]))]
        size = sum(len(view) for _, _, piece in work for view, _ in piece)
        got: dict[str, list[str]] = {}
        for (name, _, _), digest in zip(work, _run(self._fill_piece, work, size)):
            got.setdefault(name, []).append(digest)
        _compare(got, self.listed)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

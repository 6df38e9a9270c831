"""Parts in pieces: how an image's parts are cut, hashed and copied into the guest
(vsnap/snapshot/pieces.py), with a small PIECE so that small data has many pieces."""
import hashlib
from contextlib import contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsnap.snapshot import pieces

SMALL = 64


@contextmanager
def small_pieces(threads: bool):
    saved = pieces.PIECE, pieces.THREAD_MIN
    pieces.PIECE, pieces.THREAD_MIN = SMALL, 0 if threads else 1 << 62
    try:
        yield
    finally:
        pieces.PIECE, pieces.THREAD_MIN = saved


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for n in sizes:
        out.append(data[at:at + n])
        at += n
    out.append(data[at:])
    return out


@given(st.binary(max_size=700), st.lists(st.integers(0, 200), max_size=6), st.booleans())
def test_pieces_are_the_part_cut_at_every_multiple_of_piece(data, sizes, threads):
    chunks = split(data, sizes)
    with small_pieces(threads):
        cut = pieces.cut(pieces.end_to_end(chunks))
        got = pieces.digests({"p": chunks, "whole": data})
    assert [b"".join(bytes(v) for v, _ in p) for p in cut] == \
        [data[i:i + SMALL] for i in range(0, max(len(data), 1), SMALL)]
    for i, p in enumerate(cut):
        at = i * SMALL
        for view, offset in p:
            assert offset == at
            at += len(view)
    want = [hashlib.sha256(data[i:i + SMALL]).hexdigest()
            for i in range(0, max(len(data), 1), SMALL)]
    assert got == {"p": want, "whole": want}


def _listed(blobs: dict) -> dict:
    return {n: {"size": len(b), "sha256": h} for (n, b), h
            in zip(blobs.items(), pieces.digests(blobs).values())}


@given(st.binary(min_size=1, max_size=600), st.lists(st.integers(1, 150), max_size=5),
       st.booleans())
def test_unchecked_parts_are_copied_into_place_and_checked(data, sizes, threads):
    """The runs of a part, placed anywhere in guest memory in any order, come out holding
    the part's bytes; a damaged piece raises Mismatch naming its bytes."""
    with small_pieces(threads):
        blobs = {"memory/x.bin": data}
        runs, at = [], 0
        for n in [*sizes, len(data)]:
            n = min(n, len(data) - at)
            if n:
                runs.append((at, bytearray(n)))
                at += n
        u = pieces.Unchecked(blobs, _listed(blobs))
        for offset, dest in reversed(runs):
            u.place("memory/x.bin", offset, memoryview(dest))
        u.fill()
        assert b"".join(bytes(d) for _, d in runs) == data

        bad = pieces.Unchecked({"memory/x.bin": bytes([data[0] ^ 1]) + data[1:]},
                               _listed(blobs))
        for offset, dest in runs:
            bad.place("memory/x.bin", offset, memoryview(dest))
        with pytest.raises(pieces.Mismatch, match="memory/x.bin .*does not match"):
            bad.fill()


def test_runs_that_do_not_tile_their_part_are_copied_and_the_image_bytes_checked():
    """vsnap never writes such an image (overlapping runs), but one is not refused for it."""
    with small_pieces(False):
        data = bytes(range(200))
        blobs = {"memory/x.bin": data}
        a, b = bytearray(100), bytearray(100)
        u = pieces.Unchecked(blobs, _listed(blobs))
        u.place("memory/x.bin", 0, memoryview(a))
        u.place("memory/x.bin", 50, memoryview(b))  # overlaps, and leaves 150.. unplaced
        u.fill()
        assert bytes(a) == data[:100] and bytes(b) == data[50:150]


@given(data=st.binary(max_size=700), holes=st.lists(st.integers(0, 300), max_size=4),
       chunk=st.integers(1, 150))
def test_a_part_streamed_from_a_file_has_the_digests_of_its_bytes(tmp_path_factory, data,
                                                                 holes, chunk):
    """A ghost's data extents, read a chunk at a time from the file (FileRanges), hash to what
    the same bytes would as one buffer: the piece boundaries fall where they should."""
    import os
    from vsnap.snapshot.extents import FileRanges
    path = tmp_path_factory.mktemp("ranges") / "f"
    # the data laid out in the file with gaps between its ranges
    layout, ranges = bytearray(), []
    cuts = sorted({min(h, len(data)) for h in holes} | {0, len(data)})
    for lo, hi in zip(cuts, cuts[1:]):
        layout += bytes(7) + data[lo:hi]
        ranges.append((len(layout) - (hi - lo), hi - lo))
    path.write_bytes(bytes(layout))
    fd = os.open(path, os.O_RDONLY)
    part = FileRanges(fd, [r for r in ranges if r[1]])
    try:
        with small_pieces(threads=False):
            assert pieces.digests({"p": part}) == pieces.digests({"p": data})
        assert b"".join(part.chunks(chunk)) == data
    finally:
        part.close()

"""Save and restore of a guest that has touched 64 MiB, next to raw file I/O of 64 MiB.

    .venv/bin/python benchmarks/checkpoint.py

The guest (benchmarks/touch64.c) fills 64 MiB of heap with a non-repeating pattern, so no
page can be left out as all-zero. It is stopped right after (exactly, by instruction count),
saved, and restored; the same number of bytes is written+fsync'd and read back raw, in the
same folder, in the same run. Goal: save and restore each within 2x of the raw time.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vsnap import Console, Machine  # noqa: E402
from vsnap.build import build  # noqa: E402
from vsnap.snapshot import checkpoint, restore  # noqa: E402
from vsnap.snapshot.atomic import _SYNC_FILE_RANGE as SYNC_FILE_RANGE  # noqa: E402

REPEAT = 5


def marker_position(program: str) -> int:
    """The instruction count right after the guest's getppid() marker."""
    m = Machine(program, console=Console(write_out=lambda b: None))
    marks = []
    m.system.strace = lambda line: marks.append(m.cpu.instructions) \
        if line.startswith("getppid") else None
    m.run()
    return marks[0]


def quiet() -> None:
    """Let the disk finish what earlier steps started (writeback, freeing a replaced file),
    so that each timed step starts from the same state."""
    os.sync()
    time.sleep(0.2)


def raw_io(folder: str, size: int) -> tuple[float, float, float, float]:
    """Raw file time: write+fsync `size` bytes; read them back into new memory (as restore
    must: the guest's pages are new memory too); the floor, a read into a buffer that was
    allocated and touched before the clock started; and write+fsync again with the early
    writeback that vsnap's save uses (sync_file_range every 4 MiB)."""
    data = os.urandom(size)
    back = bytearray(size)
    path = os.path.join(folder, "raw.bin")
    quiet()
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)
    os.close(fd)
    write = time.perf_counter() - t0
    quiet()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        fresh = f.read()
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        got = f.readinto(back)
    floor = time.perf_counter() - t0
    assert got == size and fresh == data
    os.unlink(path)
    quiet()
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for at in range(0, size, 4 << 20):
            f.write(memoryview(data)[at:at + (4 << 20)])
            f.flush()
            if SYNC_FILE_RANGE:
                SYNC_FILE_RANGE(f.fileno(), 0, 0, 2)
        os.fsync(f.fileno())
    early = time.perf_counter() - t0
    os.unlink(path)
    return write, read, floor, early


def main() -> int:
    program = build(str(HERE / "touch64.c"))
    at = marker_position(program)
    out = bytearray()
    console = Console(write_out=out.extend)
    with tempfile.TemporaryDirectory(dir=os.environ.get("VSNAP_BENCH_DIR")) as folder:
        m = Machine(program, root=folder, console=console)
        m.advance(at)
        image = os.path.join(folder, "touch64.img")
        saves, restores, writes, reads, floors, earlies = [], [], [], [], [], []
        for _ in range(REPEAT):
            quiet()
            t0 = time.perf_counter()
            checkpoint(m, image)
            saves.append(time.perf_counter() - t0)
            quiet()
            t0 = time.perf_counter()
            m2, _ = restore(image, console=console)
            restores.append(time.perf_counter() - t0)
            w, r, fl, e = raw_io(folder, os.path.getsize(image))
            writes.append(w)
            reads.append(r)
            floors.append(fl)
            earlies.append(e)
        m2.run()
        assert out.endswith(b"EXIT-SUCCESS\n"), out
        size = os.path.getsize(image)
    med = statistics.median
    print(f"guest touched 64 MiB; image {size / 2**20:.1f} MiB; saved at instruction {at:,}; "
          f"median of {REPEAT}")
    print(f"{'':24}{'vsnap':>10}{'raw file':>10}{'ratio':>8}   goal")
    for label, ours, raw in (("save (write + fsync)", saves, writes),
                             ("restore (read)", restores, reads)):
        ratio = med(ours) / med(raw)
        print(f"{label:24}{med(ours) * 1000:>8.0f}ms{med(raw) * 1000:>8.0f}ms{ratio:>7.2f}x"
              f"   <= 2x {'PASS' if ratio <= 2 else 'MISS'}")
    print(f"(floor: reading into memory touched beforehand takes {med(floors) * 1000:.0f}ms; "
          f"SHA-256 of the image alone takes about {sha_time(size) * 1000:.0f}ms)")
    print(f"(raw write+fsync with the early writeback that save uses: "
          f"{med(earlies) * 1000:.0f}ms; save's time does not include freeing the image it "
          f"replaced, which runs on another thread after it returns)")
    return 0


def sha_time(size: int) -> float:
    import hashlib
    data = os.urandom(size)
    t0 = time.perf_counter()
    hashlib.sha256(data).digest()
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())

"""vsnap/elfhead.py, the loader's own ELF header reader, against pyelftools (the reference it
replaced on the start-up path): on every flavour of real program, on busybox, and on generated
damage to the bytes execve reads. Where the reader declines a file, the loader asks pyelftools,
so the refusals of tests/test_bad_inputs.py still say what pyelftools names."""
from __future__ import annotations

import os
import struct

import pytest
from elftools.common.exceptions import ELFError
from hypothesis import example, HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FLAVOURS, make_root, run_api, run_native
from vsnap.elfhead import read_headers, read_headers_pyelftools
from vsnap.loader import parse_program

BUSYBOX = "/bin/busybox"
NAMES = ("hello", "signals", "wordfreq")


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("name", NAMES)
def test_headers_equal_pyelftools_on_real_programs(builds, name, flavour):
    data = _read(builds.get(name, flavour))
    heads = read_headers(data)
    assert heads is not None, "a plain static x86-64 program must not need pyelftools"
    assert heads == read_headers_pyelftools(data)
    assert heads.e_type == ("ET_DYN" if flavour.endswith("pie") else "ET_EXEC")


def test_headers_equal_pyelftools_on_busybox():
    if not os.path.exists(BUSYBOX):
        pytest.skip(f"no {BUSYBOX}")
    data = _read(BUSYBOX)
    heads = read_headers(data)
    assert heads is not None and heads == read_headers_pyelftools(data)


# The bytes execve reads: e_ident .. e_phoff, e_flags .. e_phnum, and the program headers.
# Not the section header fields (0x28-0x2f, 0x3a-0x3f): see the test after this one.
def _loader_offsets(data: bytes) -> list[int]:
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phnum, = struct.unpack_from("<H", data, 0x38)
    return ([*range(0, 0x28), *range(0x30, 0x3a)]
            + list(range(phoff, phoff + 56 * phnum)))


_ORIGINALS: list[bytes] = []


@pytest.fixture
def originals(builds):
    # kept out of hypothesis' arguments: it would print a megabyte of ELF with each failure
    if not _ORIGINALS:
        _ORIGINALS.extend(_read(builds.get("hello", f)) for f in ("musl", "musl-pie"))
    return lambda which: _ORIGINALS[which]


def _without_section_headers(data: bytes) -> bytes:
    """The file with e_shoff, e_shnum and e_shstrndx zeroed: pyelftools then reads no section
    header (it read them for PT_DYNAMIC), so it reads only what execve reads."""
    out = bytearray(data)
    if len(out) >= 64:
        out[0x28:0x30] = bytes(8)
        out[0x3c:0x40] = bytes(4)
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(which=st.integers(0, 1),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=4),
       cut=st.none() | st.integers(0, 700))
@example(which=0, edits=[(1190, 0)], cut=None)  # e_phoff 0: the program headers overlap e_shoff
def test_damaged_headers_read_as_pyelftools_reads_them(originals, which, edits, cut):
    """Any damage to the bytes execve reads, and any truncation: either the reader declines
    the file (the loader then asks pyelftools, whose names its refusal uses) or it reads
    exactly what pyelftools reads."""
    data = bytearray(originals(which))
    offsets = _loader_offsets(bytes(data))
    for at, value in edits:
        data[offsets[at % len(offsets)]] = value
    if cut is not None:
        del data[cut:]
    # both readers get the same bytes: the section-header fields zeroed for pyelftools (which
    # execve never reads) may lie under the program headers when damage moved e_phoff there
    data = _without_section_headers(bytes(data))
    heads = read_headers(data)
    if heads is None:
        return
    try:
        reference = read_headers_pyelftools(data)
    except (ELFError, struct.error, ValueError) as e:
        pytest.fail(f"read a file pyelftools refuses ({e})")
    assert heads == reference


def test_section_headers_are_not_read(builds, tmp_path):
    """Linux runs a program without looking at its section headers; pyelftools read them for a
    static-pie's PT_DYNAMIC and vsnap refused such a file as damaged. Now it runs, as natively."""
    data = bytearray(_read(builds.get("hello", "musl-pie")))
    struct.pack_into("<Q", data, 0x28, len(data) + 4096)  # e_shoff: past the end of the file
    with pytest.raises(ELFError):
        read_headers_pyelftools(bytes(data))
    prog = tmp_path / "noshdr"
    prog.write_bytes(bytes(data))
    prog.chmod(0o755)
    assert parse_program(str(prog), bytes(data)).pie
    root = make_root(tmp_path / "root", str(prog))
    native = run_native(str(root / "prog"), cwd=root)
    out, _ = run_api(str(root / "prog"), root=root)
    assert (out.stdout, out.status) == (native.stdout, native.status)
    assert out.status == 0 and out.stdout

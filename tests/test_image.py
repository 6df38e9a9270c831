"""The image file as untrusted input: round trips, fuzzing, refusals, and kill -9 while saving."""
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestrun import Capture, guest, root_for, start
from vsnap.errors import VsnapError
from vsnap.snapshot import FileChanged, ImageError, checkpoint, image_bytes, load, restore
from vsnap.snapshot.codec import decode, encode
from vsnap.snapshot.restore import build, plan


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A counter guest saved mid-run (it has a log file open): (image path, its bytes, root)."""
    base = tmp_path_factory.mktemp("image")
    root = root_for(base)
    m = start(guest("counter"), root, Capture(b""))
    assert m.advance(1_500_000) is None
    path = base / "counter.img"
    checkpoint(m, str(path))
    return path, path.read_bytes(), root


def test_codec_round_trip_gives_the_same_bytes(saved):
    _, data, _ = saved
    manifest, parts = decode(data)
    assert encode(parts, manifest["program"]) == data


def test_image_is_a_zip_of_json_and_raw_parts(saved):
    path, _, _ = saved
    names = zipfile.ZipFile(path).namelist()
    for part in ("manifest.json", "registers.json", "fds.json", "kernel.json", "memory.json",
                 "memory/stack.bin", "memory/data.bin"):
        assert part in names


def _load_or_refuse(data: bytes, tmp_path: Path, root: Path) -> None:
    """Every mutated image is either usable to the end of restore or refused with
    vsnap's own error; any other exception fails the test."""
    path = tmp_path / "mutant.img"
    path.write_bytes(data)
    try:
        img = load(str(path))
        m = build(plan(img, root=str(root), force=True), Capture(b"").console)
        m.advance((m.instructions or 0) + 1000) if m.instructions is not None else None
    except VsnapError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_images_load_or_are_refused(saved, tmp_path_factory, data):
    _, good, root = saved
    blob = bytearray(good)
    how = data.draw(st.sampled_from(["flip", "truncate", "splice", "zero", "insert"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    elif how == "splice":
        i = data.draw(st.integers(0, len(blob) - 1))
        j = data.draw(st.integers(0, len(blob) - 1))
        n = data.draw(st.integers(1, 512))
        blob[i:i + n] = good[j:j + n]
    elif how == "zero":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i:i + data.draw(st.integers(1, 4096))] = bytes(4096)[:len(blob[i:i + 4096])]
    else:
        i = data.draw(st.integers(0, len(blob)))
        blob[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    _load_or_refuse(bytes(blob), tmp_path_factory.mktemp("fuzz"), root)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_tampered_json_with_valid_hashes_is_checked_field_by_field(saved, tmp_path_factory,
                                                                   data):
    """An attacker can recompute the hashes; the fields themselves must still be checked."""
    import json
    _, good, root = saved
    manifest, parts = decode(good)
    name = data.draw(st.sampled_from(["registers.json", "fds.json", "kernel.json",
                                      "memory.json"]))
    obj = json.loads(parts[name])

    def mutate(o, depth=0):
        if isinstance(o, dict) and o:
            k = data.draw(st.sampled_from(sorted(o)))
            if depth > 3 or data.draw(st.booleans()):
                o[k] = data.draw(st.one_of(st.none(), st.integers(-2**70, 2**70), st.text(),
                                           st.booleans(), st.just("0x" + "f" * 40),
                                           st.just([]), st.just({})))
            else:
                mutate(o[k], depth + 1)
        elif isinstance(o, list) and o:
            i = data.draw(st.integers(0, len(o) - 1))
            if depth > 3 or data.draw(st.booleans()):
                o[i] = data.draw(st.one_of(st.none(), st.integers(-2**70, 2**70), st.text(),
                                           st.just([0, 0, 0]), st.just([2**40, 1, 0])))
            else:
                mutate(o[i], depth + 1)

    mutate(obj)
    parts[name] = json.dumps(obj).encode()
    _load_or_refuse(encode(parts, manifest["program"]), tmp_path_factory.mktemp("tamper"), root)


@pytest.mark.parametrize("content, message", [
    (b"", "not a vsnap image"),
    (b"hello world\n", "not a vsnap image"),
    (b"PK\x03\x04" + bytes(100), "not a vsnap image"),
])
def test_non_images_are_refused(tmp_path, content, message):
    p = tmp_path / "x.img"
    p.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load(str(p))


@pytest.mark.parametrize("version, says", [
    (99, r"version 99 \(a newer vsnap's\); this vsnap reads version 4 only"),
    (2, r"version 2 \(an older vsnap's\); this vsnap reads version 4 only: resume it with the "
        r"vsnap that wrote it"),
])
def test_wrong_version_is_refused(saved, tmp_path, version, says):
    import json
    _, good, _ = saved
    manifest, parts = decode(good)
    buf = encode(parts, manifest["program"])
    z = zipfile.ZipFile(__import__("io").BytesIO(buf))
    m = json.loads(z.read("manifest.json"))
    m["version"] = version
    out = tmp_path / "v.img"
    with zipfile.ZipFile(out, "w") as w:
        for n in z.namelist():
            w.writestr(n, json.dumps(m) if n == "manifest.json" else z.read(n))
    with pytest.raises(ImageError, match=says):
        load(str(out))


def test_a_changed_file_is_refused_and_force_says_what_it_risks(tmp_path):
    root = root_for(tmp_path)
    cap = Capture(b"")
    m = start(guest("counter"), root, cap)
    assert m.advance(1_600_000) is None  # after the second tick: counter.log has two lines
    img = tmp_path / "c.img"
    checkpoint(m, str(img))
    log = root / "counter.log"
    log.write_text(log.read_text() + "tampered\n")
    with pytest.raises(FileChanged, match=r"/counter.log changed size since the save"):
        restore(str(img), console=cap.console)
    m2, warnings = restore(str(img), force=True, console=cap.console)
    assert warnings and "--force" in warnings[0] and "counter.log" in warnings[0]
    log.unlink()
    with pytest.raises(FileChanged, match=r"/counter.log no longer exists"):
        restore(str(img), console=cap.console)


def test_a_different_program_is_refused(saved, tmp_path):
    path, _, _ = saved
    other = tmp_path / "other"
    from guestrun import program
    other.write_bytes(Path(program("hello")).read_bytes())
    with pytest.raises(ImageError, match="not the program that was saved"):
        restore(str(path), program=str(other))


KILLER = r"""
import sys
from guestrun import Capture, guest, root_for, start
from vsnap.snapshot import checkpoint
from pathlib import Path
root = root_for(Path(sys.argv[1]))
m = start(guest("malloc_stress"), root, Capture(b""))
m.advance(40_000_000)   # tens of MiB of heap and mappings: a save takes a while
print("ready", flush=True)
while True:
    checkpoint(m, sys.argv[2])
"""


def test_kill_9_during_save_leaves_the_old_image_whole(saved, tmp_path):
    """A child saves the same path over and over; kill -9 it at random moments; the image at
    that path always loads (the old one or a new one, never a torn one)."""
    path, good, _ = saved
    target = tmp_path / "target.img"
    target.write_bytes(good)
    rng = random.Random(7)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                                       os.environ.get("PYTHONPATH", "")]))
    for trial in range(6):
        work = tmp_path / f"w{trial}"
        work.mkdir()
        child = subprocess.Popen([sys.executable, "-c", KILLER, str(work), str(target)],
                                 stdout=subprocess.PIPE, env=env)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
        load(str(target))  # raises if torn
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 6  # temporary files of killed saves, never the image itself


def _data_start(image: bytes, name: str) -> int:
    """Where a stored member's bytes begin in the file (after its local header)."""
    info = zipfile.ZipFile(io.BytesIO(image)).getinfo(name)
    head = image[info.header_offset:info.header_offset + 30]
    return info.header_offset + 30 + int.from_bytes(head[26:28], "little") \
        + int.from_bytes(head[28:30], "little")


def test_memory_parts_start_on_a_page_boundary(saved):
    """So that restore can read them straight into guest pages."""
    _, good, _ = saved
    names = [n for n in zipfile.ZipFile(io.BytesIO(good)).namelist() if n.startswith("memory/")]
    assert names and all(_data_start(good, n) % 4096 == 0 for n in names)


def test_a_corrupt_memory_part_is_refused_by_restore(saved, tmp_path):
    """Restore checks memory hashes as it copies them into the guest; the guest must still
    never come out."""
    path, good, root = saved
    blob = bytearray(good)
    blob[_data_start(good, "memory/stack.bin") + 200] ^= 0xFF
    bad = tmp_path / "bad.img"
    bad.write_bytes(blob)
    with pytest.raises(ImageError, match="does not match its hash"):
        restore(str(bad), root=str(root))


def test_a_big_part_is_hashed_in_pieces_and_the_bad_piece_is_named(tmp_path, monkeypatch):
    """Parts are hashed in PIECE-byte pieces (side by side on two threads); a damaged piece
    is named by its byte range. Small pieces here stand in for 16 MiB ones."""
    from vsnap.snapshot import codec, pieces
    monkeypatch.setattr(pieces, "PIECE", 4096)
    monkeypatch.setattr(codec, "PIECE", 4096)
    monkeypatch.setattr(pieces, "THREAD_MIN", 0)
    root = root_for(tmp_path)
    m = start(guest("counter"), root, Capture(b""))
    assert m.advance(200_000) is None
    image = tmp_path / "pieces.img"
    checkpoint(m, str(image))
    good = image.read_bytes()
    entry = json.loads(zipfile.ZipFile(io.BytesIO(good)).read("manifest.json"))["parts"]
    stack = entry["memory/stack.bin"]
    assert len(stack["sha256"]) == -(-stack["size"] // 4096) >= 2
    m2, _ = restore(str(image), root=str(root))  # every piece checks out
    assert m2.cpu.snapshot_registers() == m.cpu.snapshot_registers()
    m2.close()
    blob = bytearray(good)
    blob[_data_start(good, "memory/stack.bin") + 4096 + 5] ^= 0xFF
    image.write_bytes(blob)
    with pytest.raises(ImageError, match="memory/stack.bin .bytes 4096 to 8192. does not"):
        restore(str(image), root=str(root))
    m.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A counter guest stopped mid-run, and inspect's reader of its image."""
    from vsnap.snapshot.image import parse
    from vsnap.snapshot.inspect import code_reader
    m = start(guest("counter"), root_for(tmp_path_factory.mktemp("live")), Capture(b""))
    assert m.advance(1_500_000) is None
    yield m, code_reader(parse(*decode(image_bytes(m)), "live"))
    m.close()


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_inspect_reads_any_saved_bytes_as_the_guest_saw_them(live, data):
    """code_reader (inspect, diff, notebook 04) against the live guest, at any address and
    length: across saved runs, left-out zero pages and the end of a region."""
    m, read = live
    v = data.draw(st.sampled_from(m.mem.vmas))
    addr = data.draw(st.integers(v.start, v.end - 1))
    n = data.draw(st.integers(1, 3 * 4096))
    assert read(addr, n) == m.mem.read(addr, min(n, v.end - addr))


# images written by other zip tools (issue 9, item 9) -------------------------------------------

@pytest.fixture(scope="module")
def rezip_case(tmp_path_factory):
    """A counter guest saved mid-run, a copy of its root as it was at the save, and what the
    rest of an uninterrupted run prints and leaves behind."""
    import shutil
    from vsnap.testing import snapshot_files
    base = tmp_path_factory.mktemp("rezip")
    root = root_for(base)
    cap = Capture(b"")
    m = start(guest("counter"), root, cap)
    assert m.advance(1_500_000) is None
    checkpoint(m, str(base / "vsnap.img"))
    shutil.copytree(root, base / "at-save")   # times kept: the log must check out
    printed = len(cap.out)
    m.run()
    m.close()
    return base, bytes(cap.out[printed:]), snapshot_files(root)


def _resumes_the_same(case, image: Path, tmp_path: Path) -> None:
    import shutil
    from vsnap.testing import snapshot_files
    base, rest, files = case
    root = tmp_path / f"root-{image.stem}"
    shutil.copytree(base / "at-save", root)
    cap = Capture(b"")
    m, warnings = restore(str(image), root=str(root), console=cap.console)
    result = m.run()
    assert not warnings and result.status == 0
    assert bytes(cap.out) == rest
    assert snapshot_files(root) == files


def _rezip(src: Path, dst: Path, order, compress) -> None:
    """The members of `src` written again by Python's zipfile: in `order`, compressed as
    compress(name) says, timestamps of now, no alignment, no care for vsnap's layout."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for name in order(z.namelist()):
            out.writestr(name, z.read(name), compress_type=compress(name))


@pytest.mark.parametrize("compress", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_an_image_rezipped_with_zipfile_resumes(rezip_case, tmp_path, compress):
    """The README says images are zips any tool reads; one written by another tool, every
    part intact, must resume (it died with a TypeError on a memoryview)."""
    image = tmp_path / f"rezipped-{compress}.img"
    _rezip(rezip_case[0] / "vsnap.img", image, lambda names: names[::-1],
           lambda name: compress)
    _resumes_the_same(rezip_case, image, tmp_path)


@pytest.mark.parametrize("how", ["-r", "-0 -r", "stream"])
def test_an_image_unpacked_and_zipped_again_with_zip_resumes(rezip_case, tmp_path, how):
    """As a user editing a JSON part would: unzip, zip -r (folders become entries of their
    own; -0 stores parts at any offset; to a pipe, sizes come after the data)."""
    import shutil
    if not (shutil.which("zip") and shutil.which("unzip")):
        pytest.skip("no zip and unzip here")
    unpacked = tmp_path / "unpacked"
    subprocess.run(["unzip", "-q", str(rezip_case[0] / "vsnap.img"), "-d", str(unpacked)],
                   check=True)
    image = tmp_path / "zipped.img"
    if how == "stream":
        cmd = f"zip -q -r - . > {image}"
    else:
        cmd = f"zip -q {how} {image} ."
    subprocess.run(cmd, shell=True, cwd=unpacked, check=True)
    _resumes_the_same(rezip_case, image, tmp_path)


def test_vsnap_resume_takes_a_rezipped_image_without_a_traceback(rezip_case, tmp_path):
    import shutil
    from conftest import assert_no_traceback, run_cli
    base, rest, _ = rezip_case
    image = tmp_path / "rezipped.img"
    _rezip(base / "vsnap.img", image, sorted, lambda name: zipfile.ZIP_STORED)
    root = tmp_path / "root"
    shutil.copytree(base / "at-save", root)
    out = run_cli("resume", "--root", str(root), str(image))
    assert_no_traceback(out)
    assert out.status == 0 and out.stdout == rest


_METHODS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_order_and_compression_of_the_same_parts_resumes(rezip_case, tmp_path_factory,
                                                              data):
    base = rezip_case[0]
    names = zipfile.ZipFile(base / "vsnap.img").namelist()
    order = data.draw(st.permutations(names))
    methods = {n: data.draw(st.sampled_from(_METHODS)) for n in names}
    folders = data.draw(st.booleans())
    tmp = tmp_path_factory.mktemp("order")
    image = tmp / "any.img"
    with zipfile.ZipFile(base / "vsnap.img") as z, zipfile.ZipFile(image, "w") as out:
        if folders:
            out.writestr("memory/", b"")
        for name in order:
            out.writestr(name, z.read(name), compress_type=methods[name])
        out.comment = data.draw(st.binary(max_size=40))
    _resumes_the_same(rezip_case, image, tmp)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_damaged_rezipped_image_is_refused_or_resumes(rezip_case, tmp_path_factory, data):
    """Another tool's layout (deflated memory, unaligned parts), then damaged: refused with
    vsnap's own error, never another exception."""
    base = rezip_case[0]
    tmp = tmp_path_factory.mktemp("rezip-fuzz")
    image = tmp / "deflated.img"
    _rezip(base / "vsnap.img", image, sorted, lambda name: zipfile.ZIP_DEFLATED)
    blob = bytearray(image.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= 1 << data.draw(st.integers(0, 7))
    _load_or_refuse(bytes(blob), tmp, base / "at-save")


@pytest.fixture(scope="module")
def many_kinds(tmp_path_factory):
    """An image whose fds.json has every kind of record: a sparse ghost file open twice (through
    two hard links, both removed), a ghost directory, a listing half read, vsnap's /dev,
    /proc/self/maps half read, /dev/null, a file by name. (Its bytes, and its root.)"""
    from guestrun import Guest
    from vsnap.build import build
    from vsnap.testing import measure
    g = Guest(build(str(Path(__file__).parent / "guests" / "fdkinds.c")), ("many",))
    base = tmp_path_factory.mktemp("many")
    n = measure(g, base).syscalls[-60]   # everything is open and in its state by then
    root = root_for(base)
    m = start(g, root, Capture(b""))
    assert m.advance(n) is None
    data = image_bytes(m)
    m.close()
    return data, root


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_tampered_fd_records_with_valid_hashes_are_checked(many_kinds, tmp_path_factory, data):
    """fds.json's inodes, ghosts, extents and listings are untrusted like the rest."""
    good, root = many_kinds
    manifest, parts = decode(good)
    obj = json.loads(bytes(parts["fds.json"]))
    assert obj["inodes"] and any("ghost" in i for i in obj["inodes"])
    target = data.draw(st.sampled_from(["inodes", "descriptions"]))
    items = obj[target]
    item = items[data.draw(st.integers(0, len(items) - 1))]
    keys = sorted(item)
    key = data.draw(st.sampled_from(keys))
    if isinstance(item[key], dict) and item[key] and data.draw(st.booleans()):
        item = item[key]
        key = data.draw(st.sampled_from(sorted(item)))
    if isinstance(item[key], list) and item[key] and data.draw(st.booleans()):
        item, key = item[key], data.draw(st.integers(0, len(item[key]) - 1))
    item[key] = data.draw(st.one_of(
        st.none(), st.integers(-2**70, 2**70), st.text(max_size=8), st.booleans(),
        st.just([]), st.just({}), st.just([0, 1 << 40]), st.just("/"), st.just("files/x"),
        st.just([[0, 1], [0, 1]]), st.integers(0, 8)))
    parts["fds.json"] = json.dumps(obj).encode()
    _load_or_refuse(encode(parts, manifest["program"]), tmp_path_factory.mktemp("fdt"), root)


def test_a_save_that_cannot_write_its_image_says_so_in_one_line(tmp_path):
    """It was a FileNotFoundError traceback from the temporary file's open."""
    from vsnap.errors import VsnapError
    m = start(guest("counter"), root_for(tmp_path), Capture(b""))
    assert m.advance(200_000) is None
    with pytest.raises(VsnapError, match=r"^vsnap: cannot save to /nonexistent/x.img: No such "
                                         r"file or directory$"):
        checkpoint(m, "/nonexistent/x.img")
    m.close()

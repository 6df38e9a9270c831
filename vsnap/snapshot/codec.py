"""The image file: a zip of JSON parts and raw memory, written atomically, read suspiciously.

    manifest.json      format, version, the vsnap that wrote it ("vsnap": its version), the
                       program, and the size of every part with the SHA-256 of each of its
                       16 MiB pieces (one piece for most parts)
    registers.json     the jmp_buf: every register
    fds.json           the fd table, and the files and directories open (one per inode)
    kernel.json        process identity, cwd, umask, signals, clock, random, brk
    memory.json        the VMAs and, for each saved one, where its non-zero pages are
    memory/*.bin       raw page contents: stack.bin, data.bin (data+bss+heap), mappings.bin
    files/ghost-N.bin  the data extents of a file deleted while open (extents.py)

`unzip -l`, `python -m zipfile -l` and `jq` can read it, and a part's hashes can be checked
with `unzip -p IMAGE memory/data.bin | split -b 16M --filter=sha256sum`. Writing is
deterministic (fixed zip timestamps, fixed order, padding that depends only on offsets), so
saving the same state twice gives the same bytes. Reading trusts
nothing: every part is hashed and every field is type- and range-checked before a restore may
use it; any problem is an ImageError with one line that says what is wrong. Nor does reading
rely on vsnap's own layout: an image zipped again by another tool (parts in any order, stored
at any offset or compressed, folder entries added) reads the same.
"""
from __future__ import annotations

import io
import json
import mmap
import os
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

from ..errors import VsnapError
from ..version import __version__
from . import pieces
from .extents import FileRanges
from .pieces import PIECE

FORMAT = "vsnap-image"
VERSION = 4           # 2: a SHA-256 per 16 MiB piece of each part; 3: fds.json lists inodes
                      # (one per file, however many descriptions), ghosts without their holes;
                      # 4: the clock follows the instruction count, which is always known;
                      # process.cwd_removed (null, or the removed cwd's mode, mtime, inode)
JSON_PARTS = ("registers.json", "fds.json", "kernel.json", "memory.json")
MAX_PART = 1 << 34           # no part of a real image is near 16 GiB
MAX_JSON = 64 << 20
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ImageError(VsnapError):
    """An image file that cannot be used: not an image, damaged, tampered, or too new."""


def _info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = compress
    info.create_system = 3  # Unix, whatever the host: same bytes everywhere
    info.external_attr = 0o644 << 16
    return info


WRITE_CHUNK = 4 << 20
ALIGN = 4096          # memory parts start on a page boundary of the file
_PAD_ID = 0xD935      # the zip extra-field ID that Android's zipalign uses for padding


def _align(info: zipfile.ZipInfo, offset: int) -> None:
    """Pad the local header of a member that starts at `offset` so that its bytes start on
    an ALIGN boundary: restore can then read them straight into guest pages. The header is
    30 bytes, the name, this padding field and the 20-byte zip64 field (force_zip64)."""
    fixed = 30 + len(info.filename.encode()) + 4 + 20
    pad = -(offset + fixed) % ALIGN
    info.extra = struct.pack("<HH", _PAD_ID, pad) + bytes(pad)


def write_zip(f, parts: dict, program: dict, wrote=None) -> None:
    """Write an image to the binary file `f`. Each part is bytes, a list of buffers (the
    pages of a memory part, written without joining them), or a FileRanges (a file's data,
    read a chunk at a time as it is written). Parts go first; the manifest with
    their sizes and hashes goes last. `wrote` is called after each WRITE_CHUNK.

    The hashes are computed on background threads from the same buffers while this thread
    writes them (zip's CRC32 and the copy into the page cache), so on two cores the hash
    mostly costs no wall time."""
    if _small(parts):  # a thread costs more than hashing a few pages here
        _write_parts(f, parts, program, wrote, _Done(pieces.digests(parts)))
        return
    pool = ThreadPoolExecutor(max_workers=1)
    hashed = pool.submit(pieces.digests, parts)
    pool.shutdown(wait=False)
    try:
        _write_parts(f, parts, program, wrote, hashed)
    finally:
        # a failed write must not return while the hasher still reads the parts (a file's
        # descriptor is closed by the caller next)
        futures_wait([hashed])


def _small(parts: dict) -> bool:
    size = 0
    for part in parts.values():
        if isinstance(part, FileRanges):
            return False
        for chunk in part if isinstance(part, list) else [part]:
            size += memoryview(chunk).nbytes
    return size < pieces.THREAD_MIN


class _Done:
    """A result already there, in place of a future."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


def _write_parts(f, parts: dict, program: dict, wrote, hashed) -> None:
    sizes = {}
    with zipfile.ZipFile(f, "w") as z:
        for name in sorted(parts):
            part = parts[name]
            chunks = part.chunks() if isinstance(part, FileRanges) else \
                part if isinstance(part, list) else [part]
            kind = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            size, info = 0, _info(name, kind)
            if name.startswith("memory/"):
                _align(info, z.fp.tell())
            with z.open(info, "w", force_zip64=True) as out:
                for chunk in chunks:
                    view = memoryview(chunk).cast("B")
                    for at in range(0, len(view), WRITE_CHUNK):
                        out.write(view[at:at + WRITE_CHUNK])
                        if wrote:
                            wrote()
                    size += len(view)
            sizes[name] = size
        sha = hashed.result()
        listed = {name: {"sha256": sha[name], "size": sizes[name]} for name in sorted(parts)}
        manifest = {"format": FORMAT, "version": VERSION, "program": program,
                    "piece_size": PIECE, "parts": listed, "vsnap": __version__}
        z.writestr(_info("manifest.json", zipfile.ZIP_DEFLATED), dumps(manifest))


def encode(parts: dict, program: dict) -> bytes:
    """The image file's bytes for these parts (JSON parts are already serialised)."""
    buf = io.BytesIO()
    write_zip(buf, parts, program)
    return buf.getvalue()


def _compact_encoder():
    """JSON text of one value, keys sorted, in C: json's C encoder made once (json.dumps
    makes one per call, which costs more than encoding a small value)."""
    from json import encoder as e
    if e.c_make_encoder is None:
        return json.JSONEncoder(sort_keys=True).encode
    run = e.c_make_encoder(None, json.JSONEncoder().default, e.encode_basestring_ascii, None,
                           ": ", ", ", True, False, True)
    return lambda obj: "".join(run(obj, 0))


_compact = _compact_encoder()
_string = json.encoder.encode_basestring_ascii  # a str as JSON (C), as the encoder writes it


def dumps(obj) -> bytes:
    """A JSON part: keys sorted; the top two levels one item to a line (a register, a VMA, a
    kernel field), what lies deeper on that line in compact form. json's own indentation
    runs in Python, and cost a third of writing a small image; this runs in C but for the
    few lines it lays out."""
    out: list[str] = []
    _lay_out(obj, 0, out)
    out.append("\n")
    return "".join(out).encode()


def _lay_out(obj, depth: int, out: list) -> None:
    kind = type(obj)
    if kind is str:  # the common leaves, without a call into the encoder
        out.append(_string(obj))
        return
    if kind is int:
        out.append(int.__repr__(obj))
        return
    if depth == 2 or not isinstance(obj, (dict, list)) or not obj:
        out.append(_compact(obj))
        return
    pad = "\n" + " " * (depth + 1)
    if isinstance(obj, dict):
        out.append("{")
        for i, key in enumerate(sorted(obj)):
            out.append(("," if i else "") + pad + (_string(key) if type(key) is str
                                                   else _compact(key)) + ": ")
            _lay_out(obj[key], depth + 1, out)
        out.append("\n" + " " * depth + "}")
    else:
        out.append("[")
        for i, item in enumerate(obj):
            out.append("," + pad if i else pad)
            _lay_out(item, depth + 1, out)
        out.append("\n" + " " * depth + "]")


def decode(data, where: str = "image", file=None, defer=None) -> tuple[dict, dict]:
    """(manifest, parts) from an image file's bytes (or an mmap of it, with the open `file`),
    every part's hash checked. JSON parts come back as bytes; memory parts as memoryviews
    into `data`.

    With `defer` (a list), the memory parts are not hashed here: a pieces.Unchecked for them
    is appended to the list, and restore copies them into the guest and checks them there
    (see pieces), before the guest may run."""
    try:
        z = zipfile.ZipFile(file if file is not None else io.BytesIO(data))
        names = z.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as e:
        raise ImageError(f"{where}: not a vsnap image ({_short(e)}); "
                         f"give a file written by vsnap save or --save-at") from None
    if "manifest.json" not in names:
        raise ImageError(f"{where}: a zip file but not a vsnap image (no manifest.json)")
    manifest = _load_json(z, "manifest.json", where)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ImageError(f"{where}: not a vsnap image (manifest format is not {FORMAT!r})")
    version = manifest.get("version")
    if version != VERSION:
        age = ("an older vsnap's" if isinstance(version, int) and version < VERSION else
               "a newer vsnap's" if isinstance(version, int) else "unknown")
        raise ImageError(f"{where}: image format version {version!r} ({age}); this vsnap "
                         f"reads version {VERSION} only: resume it with the vsnap that wrote it")
    listed = manifest.get("parts")
    if not isinstance(listed, dict):
        raise ImageError(f"{where}: damaged manifest (no parts table)")
    for name in JSON_PARTS:
        if name not in listed:
            raise ImageError(f"{where}: damaged image: part {name} is missing")
    whole = memoryview(data)
    parts: dict = {}
    offsets: dict = {}
    if manifest.get("piece_size") != PIECE:
        raise ImageError(f"{where}: damaged manifest (piece_size is not {PIECE})")
    for name, meta in listed.items():
        if not (isinstance(meta, dict) and isinstance(meta.get("size"), int)
                and 0 <= meta["size"] <= MAX_PART and isinstance(meta.get("sha256"), list)
                and len(meta["sha256"]) == max(1, -(-meta["size"] // PIECE))
                and all(isinstance(d, str) for d in meta["sha256"])):
            raise ImageError(f"{where}: damaged manifest entry for {name!r}")
        if name.endswith(".json") and meta["size"] > MAX_JSON:
            raise ImageError(f"{where}: {name} is implausibly large")
        if name not in names:
            raise ImageError(f"{where}: damaged image: part {name} is listed but missing")
        parts[name], offsets[name] = _read_member(z, whole, name, meta["size"], where)
    # `zip -r` and other tools add entries for folders (memory/, files/): empty, harmless
    extra = {n for n in names if not (n.endswith("/") and z.getinfo(n).file_size == 0)} \
        - set(listed) - {"manifest.json"}
    if extra:
        raise ImageError(f"{where}: image holds parts its manifest does not list: "
                         f"{', '.join(sorted(extra))[:80]}")
    later = {n: b for n, b in parts.items() if defer is not None and n.startswith("memory/")}
    try:
        pieces.check({n: b for n, b in parts.items() if n not in later}, listed)
    except pieces.Mismatch as e:
        raise ImageError(f"{where}: {e}") from None
    if defer is not None:
        fd = os.dup(file.fileno()) if file is not None and hasattr(file, "fileno") else None
        defer.append(pieces.Unchecked(later, {n: listed[n] for n in later}, fd,
                                      {n: offsets[n] for n in later if offsets[n] is not None}))
    return manifest, parts


def _read_member(z, whole, name, size, where):
    """A part's bytes. A stored (uncompressed) part of a mapped file is not read at all: it
    is a view of the mapping at the member's data offset, and its SHA-256 vouches for it."""
    try:
        info = z.getinfo(name)
        if info.file_size != size:
            raise ImageError(f"{where}: part {name} has the wrong size for its manifest entry")
        if whole is not None and info.compress_type == zipfile.ZIP_STORED:
            head = bytes(whole[info.header_offset:info.header_offset + 30])
            if len(head) != 30 or head[:4] != b"PK\x03\x04":
                raise ImageError(f"{where}: part {name} has a damaged local header")
            start = info.header_offset + 30 + int.from_bytes(head[26:28], "little") \
                + int.from_bytes(head[28:30], "little")
            view = whole[start:start + size]
            if len(view) != size:
                raise ImageError(f"{where}: part {name} runs past the end of the file: "
                                 f"the image is truncated")
            return view, start
        with z.open(info) as f:
            return f.read(size + 1), None
    except ImageError:
        raise
    except Exception as e:  # zlib.error, BadZipFile, EOFError, NotImplementedError...
        raise ImageError(f"{where}: part {name} cannot be read ({_short(e)}): the image is "
                         f"truncated or corrupt") from None


def _load_json(z, name, where):
    try:
        info = z.getinfo(name)
        if info.file_size > MAX_JSON:
            raise ImageError(f"{where}: {name} is implausibly large")
        with z.open(info) as f:
            return json.loads(f.read(MAX_JSON + 1))
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(f"{where}: {name} cannot be read ({_short(e)}): the image is "
                         f"truncated or corrupt") from None


def load_json_part(parts: dict, name: str, where: str):
    try:
        # a part another zip tool stored uncompressed is a view into the file: bytes for json
        return json.loads(bytes(parts[name]))
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{where}: {name} is not valid JSON ({_short(e)})") from None


def read_file(path: str, defer=None) -> tuple[dict, dict]:
    """Decode the image at `path` through a private copy-on-write mapping of it: memory parts
    stay in the page cache until restore copies them into the guest."""
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read it ({e.strerror})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ImageError(f"{path}: an empty file, not a vsnap image")
        try:
            data = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as e:
            raise ImageError(f"{path}: cannot map it ({e})") from None
        return decode(data, path, file=f, defer=defer)


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:100]

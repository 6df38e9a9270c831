"""The image file: a zip of JSON parts and raw memory, written atomically, read suspiciously.

    manifest.json      format, version, the program, and the SHA-256 and size of every part
    registers.json     the jmp_buf: every register
    fds.json           the fd table
    kernel.json        process identity, cwd, umask, signals, clock, random, brk
    memory.json        the VMAs and, for each saved one, where its non-zero pages are
    memory/*.bin       raw page contents: stack.bin, data.bin (data+bss+heap), mappings.bin

`unzip -l`, `python -m zipfile -l` and `jq` can read it. Writing is deterministic (fixed zip
timestamps, fixed order), so saving the same state twice gives the same bytes. Reading trusts
nothing: every part is hashed and every field is type- and range-checked before a restore may
use it; any problem is an ImageError with one line that says what is wrong.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

from ..errors import VsnapError

FORMAT = "vsnap-image"
VERSION = 1
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


def encode(parts: dict[str, bytes], program: dict) -> bytes:
    """The image file's bytes for these parts (JSON parts are already serialised)."""
    manifest = {
        "format": FORMAT, "version": VERSION, "program": program,
        "parts": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                  for name, data in sorted(parts.items())},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(_info("manifest.json", zipfile.ZIP_DEFLATED), dumps(manifest))
        for name, data in sorted(parts.items()):
            kind = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            z.writestr(_info(name, kind), data)
    return buf.getvalue()


def dumps(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def write_atomically(path: str, data: bytes) -> None:
    """Write `data` to `path` so that a crash at any moment leaves either the old file or the
    new one there, whole: write a temporary file beside it, fsync, rename, fsync the folder."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def decode(data: bytes, where: str = "image") -> tuple[dict, dict[str, bytes]]:
    """(manifest, parts) from an image file's bytes, every part's hash checked."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
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
        raise ImageError(f"{where}: image format version {version!r}, this vsnap reads "
                         f"version {VERSION}; use the vsnap that wrote it")
    listed = manifest.get("parts")
    if not isinstance(listed, dict):
        raise ImageError(f"{where}: damaged manifest (no parts table)")
    parts: dict[str, bytes] = {}
    for name in JSON_PARTS:
        if name not in listed:
            raise ImageError(f"{where}: damaged image: part {name} is missing")
    for name, meta in listed.items():
        if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str)
                and isinstance(meta.get("size"), int) and 0 <= meta["size"] <= MAX_PART):
            raise ImageError(f"{where}: damaged manifest entry for {name!r}")
        if name not in names:
            raise ImageError(f"{where}: damaged image: part {name} is listed but missing")
        blob = _read_member(z, name, meta["size"], where)
        if len(blob) != meta["size"] or hashlib.sha256(blob).hexdigest() != meta["sha256"]:
            raise ImageError(f"{where}: part {name} does not match its hash: the image is "
                             f"corrupt or was edited; use vsnap patch to change an image")
        parts[name] = blob
    extra = set(names) - set(listed) - {"manifest.json"}
    if extra:
        raise ImageError(f"{where}: image holds parts its manifest does not list: "
                         f"{', '.join(sorted(extra))[:80]}")
    return manifest, parts


def _read_member(z, name, size, where) -> bytes:
    try:
        info = z.getinfo(name)
        if info.file_size != size:
            raise ImageError(f"{where}: part {name} has the wrong size for its manifest entry")
        with z.open(info) as f:
            return f.read(size + 1)
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


def load_json_part(parts: dict[str, bytes], name: str, where: str):
    try:
        return json.loads(parts[name])
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{where}: {name} is not valid JSON ({_short(e)})") from None


def read_file(path: str) -> tuple[dict, dict[str, bytes]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read it ({e.strerror})") from None
    return decode(data, path)


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:100]

"""AF_UNIX's part of a socket record (snapshot/sockimage.py): its names and their table.

The system's name table (System.unix_names, kernel/unixaddr.py) is not saved as such: every
bound socket still in it is alive and so in the image, and its record says how it is bound.
An abstract name is bound by itself. A path name is bound to an S_IFSOCK inode of the root,
which the table knows by host (st_dev, st_ino): the image records a guest path that leads to
that inode now (found as inodes.py finds a file's name), and restore looks the inode up there
again (the resume may use another copy of the root). A socket whose file was removed keeps
its name (getsockname) but no one can reach it: it comes back bound to no file. Autobind
takes the lowest free name, so the restored table gives the same next names.
"""
from __future__ import annotations

import os
import stat as S

from ..kernel.unixaddr import AF_UNIX, SUN_PATH, names
from ..sockets import SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM
from . import sockimage
from .inodes import _resolves_to, _walk


class UnixImage(sockimage.FamilyImage):
    number = AF_UNIX
    types = frozenset({SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET})

    def valid_name(self, name) -> bool:
        if not (isinstance(name, tuple) and len(name) == 2 and isinstance(name[1], bytes)):
            return False
        kind, value = name
        if kind == "abstract":
            return 1 <= len(value) <= SUN_PATH and value[0] == 0
        return kind == "path" and 1 <= len(value) < SUN_PATH and b"\0" not in value

    def save_binding(self, m, sock) -> dict | None:
        table = getattr(m.system, "unix_names", None)
        if sock.bound is None or table is None:
            return None
        owner, key = sock.bound
        if owner is not table or table.get(key) is not sock:
            return None
        if key[0] == "abstract":
            return {"abstract": True}
        found = None
        if os.fsdecode(sock.addr[1]).startswith("/"):
            found = _resolves_to(m, os.fsdecode(sock.addr[1]), key[1:])
        return {"path": found or _walk(m, key[1:])}

    def parse_binding(self, r, raw, path: str, addr):
        raw = r.obj(raw, path)
        if raw == {"abstract": True}:
            if addr[0] != "abstract":
                r.fail(path, "a path name bound as an abstract one")
            return {"abstract": True}
        if set(raw) != {"path"} or addr[0] != "path":
            r.fail(path, "expected {abstract: true} or {path: guest path or null}")
        guest = r.opt_str(raw["path"], path + ".path")
        if guest is not None and not guest.startswith("/"):
            r.fail(path + ".path", "not an absolute guest path")
        return {"path": guest}

    def _inode(self, vfs, guest: str):
        """The host identity of the socket file at `guest`, or None."""
        try:
            res = vfs.resolve(guest, "/", follow=False)
            if res.special or not res.exists or res.host is None:
                return None
            st = os.lstat(res.host)
        except Exception:  # a name that no longer resolves: no file
            return None
        return (st.st_dev, st.st_ino) if S.S_ISSOCK(st.st_mode) else None

    def binding_key(self, addr, binding):
        if binding.get("abstract"):
            return addr
        return None if binding["path"] is None else ("path", binding["path"])

    def check(self, binding, vfs) -> list[str]:
        guest = binding.get("path")
        if guest is not None and self._inode(vfs, guest) is None:
            return [f"the socket file {guest} a socket was bound to is gone or is not a "
                    f"socket now"]
        return []

    def bind(self, m, sock, binding, index: int) -> None:
        p = m.process
        table = names(p)
        if binding.get("abstract"):
            key = ("abstract", sock.addr[1])
        else:
            ident = None if binding["path"] is None else self._inode(m.vfs, binding["path"])
            # no file (removed, or --force past a changed one): bound where no one finds it
            key = ("inode",) + ident if ident is not None else ("gone", index)
        table[key] = sock
        sock.bound = (table, key)


sockimage.register(UnixImage())

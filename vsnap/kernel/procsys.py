"""/proc/sys: the kernel settings that say where a core file goes, and nothing else.

    /proc/sys/kernel/core_pattern    "core": a file named core in the dying process's cwd
    /proc/sys/kernel/core_uses_pid   "0": its name does not end in .PID

They describe what vsnap does (crashdump.py), as Linux's defaults. Both are root's files on
Linux (mode 0644): the guest, an ordinary user, reads them and may not write them.
"""
from __future__ import annotations

from ..abi import consts as C
from ..crashdump import CORE
from ..vfs import VNode

FILES = {"kernel": {"core_pattern": CORE.encode() + b"\n", "core_uses_pid": b"0\n"}}


def node(parts: list[str]) -> VNode | None:
    """The VNode of /proc/sys/... (parts after "sys")."""
    if not parts:
        return VNode("dir", is_dir=True)
    files = FILES.get(parts[0])
    if files is None or len(parts) > 2:
        return None
    if len(parts) == 1:
        return VNode("dir", is_dir=True)
    return VNode(f"proc:sys/{parts[0]}/{parts[1]}") if parts[1] in files else None


def entries(parts: list[str]) -> list[tuple[str, int]] | None:
    if not parts:
        return [(name, C.DT_DIR) for name in sorted(FILES)]
    if len(parts) == 1 and parts[0] in FILES:
        return [(name, C.DT_REG) for name in sorted(FILES[parts[0]])]
    return None


def content(name: str) -> bytes:
    """The bytes of "sys/kernel/NAME"."""
    _, group, leaf = name.split("/")
    return FILES[group][leaf]

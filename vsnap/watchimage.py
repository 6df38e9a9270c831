"""`vsnap run --watch --restart-from-checkpoint`: the service comes back from the last image
it saved itself to instead of from its first instruction, with the live sockets put back in
place of the saved ones.

The image is the file at the guest's checkpoint template (%N.ckpt in its current directory,
or --ckptfile): where sys_checkpoint(CKPT_FREEZE, -1, -1) and SIGCKPT write. It is used only
if it was written during this watch and holds one process (a tree cannot come back as one
service process); otherwise the service starts from scratch and the restart line says why.

The image becomes a new process (a new pid, as every restart), as kernel/ckpt.py's thaw
makes an image the calling process: it is loaded into a machine of its own, then its memory,
registers, fds, signals, limits and timers move into the new process of the running System.
A socket of the image whose inode number is that of a live socket vsnap holds (a listening
socket, a stored fd) is replaced by the live one, so its clients, connected all along, are
the restored server's again. A saved socket with no live counterpart (its client left, or
FDSTOREREMOVE took it) comes back as closed by the peer. Stored fds the image does not know
(clients that came after the save) cannot be handed to a process that will not read
LISTEN_FDS again: they are closed, and their clients see the connection end. The clock is
the running System's (it never goes back): a timer the image had armed keeps its deadline,
so one that has passed since the save fires at once.
"""
from __future__ import annotations

import os

from .sockets import SHUTDOWN_MASK, release_files


def image_path(p, since_ns: int) -> tuple[str | None, str]:
    """(host path of the last image, "") or (None, why there is none) for the service
    process p (still whole: its cwd and name make the template's path)."""
    from .abi import consts as C
    from .kernel.ckpt import template_path
    from .kernel.dirref import resolve
    from .kernel.fsutil import creds
    guest = template_path(p)
    try:
        r = resolve(p, C.AT_FDCWD, guest, follow=True, creds=creds(p))
    except Exception as e:  # a path the guest could not name: no image there
        return None, f"no image at {guest} ({e})"
    if r.host is None or not os.path.isfile(r.host):
        return None, f"no image at {guest}"
    if os.stat(r.host).st_mtime_ns < since_ns:
        return None, f"{guest} was not saved during this watch"
    return r.host, guest


def load(m, host: str):
    """The image as a machine of its own (its own System, dropped after), or a reason."""
    from .errors import VsnapError
    from .snapshot.restore import restore_bytes
    with open(host, "rb") as fh:
        data = fh.read()
    try:
        m2, _ = restore_bytes(data, root=m.system.vfs.root, console=m.system.console,
                              where=host)
    except VsnapError as e:
        return None, f"it cannot be resumed: {str(e).removeprefix('vsnap: ')}"
    if len(m2.system.processes) > 1:
        m2.close()
        return None, "it holds several processes"
    return m2, ""


def become(p, m2, live: list) -> tuple[int, int]:
    """The image's process becomes p (new pid kept): its state moves in, its sockets that
    are live are replaced by the live descriptions (`live`: OpenFiles vsnap holds). The
    count of sockets replaced and of saved ones with no live counterpart (now closed)."""
    from .kernel.ckpt import take_over
    from .sched import wire
    q = m2.process
    by_ino = {}
    for f in live:
        sock = getattr(f.ops, "sock", None)
        if sock is not None:
            by_ino[sock.ino] = f
    old = take_over(p, q)  # p's own engine and memory were never run: retired at once below
    replaced = hung = 0
    saved_files = {}
    for entry in p.fds.fds.values():
        f = entry.file
        sock = getattr(f.ops, "sock", None) if f.kind == "socket" else None
        if sock is None:
            continue
        new = by_ino.get(sock.ino)
        if new is None:
            if id(f) not in saved_files:
                saved_files[id(f)] = f
                _hung_up(sock)
                hung += 1
            continue
        entry.file = new
        new.refs += 1
        f.refs -= 1
        if f.refs <= 0:
            f.close()
            replaced += 1             # a saved description, all its fds now the live one's
    wire(p)
    p.drop_retired()
    old.close_all()
    m2.system.processes.clear()  # the loaded machine's own system is dropped
    p.execd = True
    return replaced, hung


def _hung_up(sock) -> None:
    """A saved connection whose client is gone: as after the peer's close (both ways shut,
    no peer), so a read sees the end and a write EPIPE."""
    peer, sock.peer = sock.peer, None
    if peer is not None and peer.peer is sock:
        peer.peer = None
    sock.shutdown = SHUTDOWN_MASK
    if sock.stream and sock.state == "connected":
        sock.state = "closed"


def forget(store, known: set) -> list[str]:
    """Stored fds whose sockets the restored process does not know: closed. Their names."""
    gone = [(n, f) for n, f in store.items
            if getattr(getattr(f.ops, "sock", None), "ino", None) not in known]
    store.items = [(n, f) for n, f in store.items if all(f is not g for _, g in gone)]
    release_files([f for _, f in gone], store.system.locks)
    return [n for n, _ in gone]

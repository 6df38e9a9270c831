"""Scratch directories for guest roots, removed on a thread of their own.

Every checkpoint example runs its guests in a fresh root inside a fresh temporary directory.
Removing a directory blocks: on this project's machines (ext4 mounted with `discard`) one
rmdir takes about 2.5 ms of wall time and almost no CPU, and an example made and removed two,
as long as the rest of a small example. So a used directory is handed to a reaper thread,
which removes it while the next examples run; `drain()` waits until all are gone, and runs
at exit too, so that nothing is left behind.
"""
from __future__ import annotations

import atexit
import contextlib
import queue
import shutil
import tempfile
import threading
from pathlib import Path


class _Reaper:
    def __init__(self):
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, path: str) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vsnap-scratch",
                                                daemon=True)
                self._thread.start()
        self._todo.put(path)

    def _run(self) -> None:
        while True:
            item = self._todo.get()
            if isinstance(item, threading.Event):
                item.set()
            else:
                shutil.rmtree(item, ignore_errors=True)

    def drain(self) -> None:
        """Return once every directory handed over so far is removed."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
        if running:
            done = threading.Event()
            self._todo.put(done)
            done.wait()


_REAPER = _Reaper()
atexit.register(_REAPER.drain)
drain = _REAPER.drain
discard = _REAPER.put  # remove this directory in the background


@contextlib.contextmanager
def scratch(prefix: str = "vsnap-test-"):
    """A new temporary directory (a Path) for the block, removed after it in the
    background."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield Path(path)
    finally:
        _REAPER.put(path)

"""vsnap's C hooks (counter.py's block counter, tlb.py's TLB fill): each built once with `zig cc`
into vsnap's cache and loaded, and added to an engine through Unicorn's C API directly (the
binding would put a Python call in front of every block or TLB miss)."""
from __future__ import annotations

import ctypes

import unicorn as U
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

_loaded: dict[str, tuple] = {}  # name -> (library or None, why it could not be built)


def load(name: str, source: bytes) -> tuple:
    """(library, None), or (None, the reason) when it cannot be built; tried once a process."""
    if name not in _loaded:
        import subprocess  # only here: start-up time counts (issue 10)
        from .build import host_library
        try:
            _loaded[name] = (host_library(name, source), None)
        except (OSError, subprocess.SubprocessError) as e:
            _loaded[name] = (None, str(e))
    return _loaded[name]


def add_hook(uc, kind: int, fn, data, begin: int = 1, end: int = 0):
    """Add C function `fn` as a hook of `kind` with `data` as its user data; the handle."""
    handle = uc_hook_h()
    err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), kind,
                            ctypes.cast(fn, ctypes.c_void_p), ctypes.cast(data, ctypes.c_void_p),
                            ctypes.c_uint64(begin), ctypes.c_uint64(end))
    if err:
        raise U.UcError(err)
    return handle

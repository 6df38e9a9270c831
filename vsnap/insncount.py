"""How many instructions a run of x86-64 bytes holds, as Unicorn's translator splits them: what
the block counter (counter.py) asks for blocks the guest can write and for the part of a
block before a fault or a served rdtsc. capstone decodes the same x86-64."""
from __future__ import annotations

import ctypes
import os

_lengths: dict[bytes, int] = {}  # instructions in a block, by its bytes, for every machine


def count_code(code: bytes, address: int) -> int:
    """Instructions in these bytes as Unicorn's translator splits them (capstone decodes
    the same x86-64; a block never holds an instruction Unicorn could not decode except as
    its last, which faults and is then not counted anyway)."""
    n = _lengths.get(code)
    if n is None:
        n = _lengths[code] = _decoder()(code, address)
    return n


_count_fn = None


def _decoder():
    """count(code, address): capstone's cs_disasm called through ctypes on the capstone
    package's own library. Every run counts, and importing the Python package costs ~70 ms
    of start-up (it loads every architecture's constants) where the library costs ~1 ms.
    Any other capstone than the 5.x this was written for: the Python package instead."""
    global _count_fn
    if _count_fn is None:
        _count_fn = _native_decoder() or _python_decoder()
    return _count_fn


def _python_decoder():
    from .trace import instruction_count
    return instruction_count


def _native_decoder():
    import importlib.util
    spec = importlib.util.find_spec("capstone")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "lib", "libcapstone.so")
        if os.path.exists(path):
            break
    else:
        return None
    try:
        cs = ctypes.CDLL(path)
        major, minor = ctypes.c_int(), ctypes.c_int()
        cs.cs_version(ctypes.byref(major), ctypes.byref(minor))
        if major.value != 5:
            return None
        handle = ctypes.c_size_t()
        cs.cs_open.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)]
        if cs.cs_open(3, 8, ctypes.byref(handle)):  # CS_ARCH_X86, CS_MODE_64
            return None
    except (OSError, AttributeError):
        return None
    cs.cs_disasm.restype = ctypes.c_size_t
    cs.cs_disasm.argtypes = [ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                             ctypes.c_uint64, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    cs.cs_free.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    h = handle.value

    def count(code: bytes, address: int) -> int:
        insns = ctypes.c_void_p()
        n = cs.cs_disasm(h, code, len(code), address, 0, ctypes.byref(insns))
        if n:
            cs.cs_free(insns, n)
        return n
    return count

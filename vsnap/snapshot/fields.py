"""Checked reading of untrusted JSON from an image: each helper returns a value of the right
type and range or raises ImageError naming the field. Numbers that can exceed 2**53 are
written as hex strings so that jq and JavaScript read them exactly."""
from __future__ import annotations

import re

from .codec import ImageError

_HEX = re.compile(r"0x[0-9a-f]{1,64}\Z")


def hexs(value: int) -> str:
    return f"{value:#x}"


class Reader:
    """Field access with the image's name and a path in every error message."""

    def __init__(self, where: str, part: str):
        self.where, self.part = where, part

    def fail(self, path: str, what: str):
        raise ImageError(f"{self.where}: {self.part} {path}: {what}; the image is damaged")

    def obj(self, v, path: str) -> dict:
        if not isinstance(v, dict):
            self.fail(path, "expected an object")
        return v

    def list(self, v, path: str, limit: int = 1 << 20) -> list:
        if not isinstance(v, list) or len(v) > limit:
            self.fail(path, "expected a list")
        return v

    def key(self, d: dict, k: str, path: str):
        if k not in d:
            self.fail(f"{path}.{k}", "missing")
        return d[k]

    def int(self, v, path: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            self.fail(path, f"expected an integer in [{lo}, {hi}]")
        return v

    def hex(self, v, path: str, bits: int = 64) -> int:
        if not isinstance(v, str) or not _HEX.match(v):
            self.fail(path, "expected a hex string like 0x1f")
        n = int(v, 16)
        if n >> bits:
            self.fail(path, f"wider than {bits} bits")
        return n

    def str(self, v, path: str, limit: int = 4096) -> str:
        if not isinstance(v, str) or len(v) > limit:
            self.fail(path, "expected a string")
        return v

    def opt_str(self, v, path: str) -> str | None:
        return None if v is None else self.str(v, path)

    def bool(self, v, path: str) -> bool:
        if not isinstance(v, bool):
            self.fail(path, "expected true or false")
        return v

    def choice(self, v, path: str, options) -> str:
        if not isinstance(v, (str, int, type(None))) or v not in options:
            self.fail(path, f"expected one of {', '.join(sorted(map(str, options)))}")
        return v

    def bytes(self, v, path: str, limit: int = 1 << 20) -> bytes:
        s = self.str(v, path, 2 * limit)
        try:
            return bytes.fromhex(s)
        except ValueError:
            self.fail(path, "expected hex bytes")

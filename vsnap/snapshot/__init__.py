"""Checkpoint and restore: Antonov's save file (seeds/002), made inspectable.

    checkpoint(machine, path)          save a stopped guest, atomically
    restore(path) -> (machine, warns)  a fresh machine that continues where it stopped
"""
from .checkpoint import checkpoint, image_bytes
from .codec import ImageError
from .restore import FileChanged, load, restore

__all__ = ["FileChanged", "ImageError", "checkpoint", "image_bytes", "load", "restore"]

"""The emulated Linux kernel. Importing this package registers every system call handler."""
from . import files, misc, mm, paths, proc, time  # noqa: F401  (each registers its handlers)
from .core import Console, GuestExit, Kernel
from .registry import SYSCALLS

__all__ = ["Console", "GuestExit", "Kernel", "SYSCALLS"]

"""The emulated Linux kernel. Importing this package registers every system call handler."""
# each module registers its handlers when imported
from . import creds, files, misc, mm, paths, proc, signal, time  # noqa: F401
from . import extents, filetimes, sendfile, statfs, sync  # noqa: F401
from . import filelocks, futex, poll  # noqa: F401
from . import limits, timers  # noqa: F401
from . import attrs, statcalls  # noqa: F401
from . import anonfile, fifo, opath, prctl, privileged  # noqa: F401
from . import ckpt, exec, fork, pipecalls  # noqa: F401
from . import sockcalls, sockopts  # noqa: F401
from . import inetfamily  # noqa: F401
from . import epoll, eventfd  # noqa: F401
from ..errors import GuestExit
from .core import Capture, Console, Process
from .registry import SYSCALLS

__all__ = ["Capture", "Console", "GuestExit", "Process", "SYSCALLS"]

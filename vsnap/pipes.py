"""A pipe as Linux's fs/pipe.c keeps it: a plain kernel object, all in memory.

Every guest process runs inside one host process, so a pipe is never a host pipe: it is a ring
of page-sized slots (16 by default, 64 KiB), each holding the bytes of one page from a read
offset. A write first appends its sub-page remainder (len % 4096) to the last slot when that
slot has room after its end, then fills whole new slots. This is why the bytes a pipe holds
depend on the write sizes: 1-byte writes fill 65536 bytes, 4097-byte writes only 45066 (each
odd write leaves a 1-byte slot). Writes of at most PIPE_BUF bytes are atomic because they fit
either in the last slot or in one new slot.

The pipe keeps no process references. A scheduler parks a reader until `readable()` and a
writer until `writable()` (the conditions Linux's pipe_readable/pipe_writable wake on), and
re-checks them when it picks who runs next. Counts of open read and write ends are of open
file descriptions: pipe() makes one of each; dup and fork share them and change no count.

For epoll (waitq.py), the pipe wakes its two wait queues where Linux 6.x does once anything
has polled it: `rd_wait` (the read ends' watchers) on every write(2) attempt with bytes, key
POLLIN (a write into a readable pipe is news to an edge-triggered reader; so is one that
failed EAGAIN or EPIPE, as pipe_write's exit path wakes anyway); `wr_wait` when a read frees
a page of a full pipe and when F_SETPIPE_SZ may have made room, key POLLOUT; and both, key 0,
when the last end of one kind closes while the other kind is still open. Not modelled: the
extra wakes of a blocking read or write that waited (wake_next_reader/writer).
"""
from __future__ import annotations

import base64
import binascii

from .abi import errno as E
from .errors import SyscallError
from .waitq import WaitQueue

PAGE_SIZE = 4096
PIPE_BUF = 4096                  # writes up to this many bytes are atomic (pipe(7))
DEFAULT_SIZE = 16 * PAGE_SIZE    # a new pipe's capacity (pipe(7): 16 pages since 2.6.11)
PIPE_MAX_SIZE = 1048576          # /proc/sys/fs/pipe-max-size: the unprivileged ceiling
SIZE_LIMIT = 1 << 31             # round_pipe_size gives 0 (EINVAL) above this

# poll(2) bits as Linux reports them (asm-generic/poll.h); kernel/poll.py holds the same values
POLLIN, POLLOUT, POLLERR, POLLHUP = 0x1, 0x4, 0x8, 0x10
POLLRDNORM, POLLWRNORM = 0x40, 0x100

SAVED_KEYS = {"size", "readers", "writers", "slots"}


class WouldBlock(Exception):
    """The call cannot go on now: park the caller until the pipe is readable()/writable()."""


class BrokenPipe(Exception):
    """A write with no read end open: the handler sends SIGPIPE and fails with EPIPE (or, after
    a blocking write already moved some bytes, returns that count, as Linux does)."""


class _Slot:
    """One page of the ring: `data` holds the unread bytes, which start at page offset
    `offset` (reads move it on; a write may append only up to the page's end). A packet page
    (written through an O_DIRECT end) is never merged into, and one read takes it whole."""

    __slots__ = ("offset", "data", "packet")

    def __init__(self, offset: int, data: bytes, packet: bool = False):
        self.offset = offset
        self.data = bytearray(data)
        self.packet = packet

    def room(self) -> int:
        return 0 if self.packet else PAGE_SIZE - self.offset - len(self.data)


def round_size(arg: int) -> int:
    """The capacity F_SETPIPE_SZ gives for `arg` bytes (fs/pipe.c round_pipe_size): at least
    one page, rounded up to a power of two; 0 when above 2 GiB (the caller fails EINVAL)."""
    if arg > SIZE_LIMIT:
        return 0
    if arg < PAGE_SIZE:
        return PAGE_SIZE
    return 1 << (arg - 1).bit_length()


class Pipe:
    """The buffer and the two end counts of one pipe (or, later, FIFO)."""

    def __init__(self, size: int = DEFAULT_SIZE, readers: int = 1, writers: int = 1):
        self.slots: list[_Slot] = []
        self.pages = size // PAGE_SIZE   # the slots writes may fill (Linux's max_usage)
        self.readers = readers
        self.writers = writers
        self.rd_wait = WaitQueue()       # epoll items watching a read end (not saved)
        self.wr_wait = WaitQueue()       # ... and a write end

    # -- the ends ----------------------------------------------------------------------------

    def open_end(self, reading: bool) -> None:
        """A new open file description of one end (a FIFO open; pipe() starts with one each)."""
        if reading:
            self.readers += 1
        else:
            self.writers += 1

    def close_end(self, reading: bool) -> None:
        """The last reference to an open file description of one end went away."""
        if (self.readers if reading else self.writers) <= 0:
            raise ValueError(f"pipe: no {'read' if reading else 'write'} end left to close")
        if reading:
            self.readers -= 1
        else:
            self.writers -= 1
        if (self.readers == 0) != (self.writers == 0):  # pipe_release: the other side hears
            self.rd_wait.wake(0)
            self.wr_wait.wake(0)

    # -- what poll, FIONREAD and F_GETPIPE_SZ see --------------------------------------------

    @property
    def size(self) -> int:
        """The capacity in bytes, as F_GETPIPE_SZ reports it."""
        return self.pages * PAGE_SIZE

    @property
    def nread(self) -> int:
        """Bytes waiting to be read (FIONREAD)."""
        return sum(len(s.data) for s in self.slots)

    @property
    def full(self) -> bool:
        """Every slot is taken: a write can at most append to the last slot."""
        return len(self.slots) >= self.pages

    @property
    def hangup(self) -> bool:
        """No write end is open: a reader sees EOF once the buffer is empty (POLLHUP)."""
        return self.writers == 0

    def readable(self) -> bool:
        """A read would not block: bytes are waiting, or no writer is left (EOF)."""
        return bool(self.slots) or self.writers == 0

    def writable(self) -> bool:
        """A write would not block: a slot is free, or no reader is left (EPIPE). A blocked
        writer waits for this (Linux does not retry the merge into the last slot)."""
        return not self.full or self.readers == 0

    def poll(self, reading: bool) -> int:
        """The revents bits of one end (fs/pipe.c pipe_poll): the read end has POLLIN while
        bytes wait and POLLHUP once no writer is open; the write end POLLOUT while a slot is
        free and POLLERR once no reader is open."""
        if reading:
            mask = POLLIN | POLLRDNORM if self.slots else 0
            return mask | (POLLHUP if self.writers == 0 else 0)
        mask = 0 if self.full else POLLOUT | POLLWRNORM
        return mask | (POLLERR if self.readers == 0 else 0)

    # -- reading and writing -----------------------------------------------------------------

    def read(self, n: int, nonblock: bool = False) -> bytes:
        """Up to `n` bytes (all that wait, if fewer; a packet page ends the read and loses what
        did not fit); b"" at EOF or for n == 0. Empty with a writer open: SyscallError(EAGAIN)
        if nonblock, else WouldBlock."""
        if n < 0:
            raise ValueError("pipe: negative read count")
        if n == 0:
            return b""                       # Linux returns before looking at the buffer
        if not self.slots:
            if self.writers == 0:
                return b""
            if nonblock:
                raise SyscallError(E.EAGAIN, "pipe is empty")
            raise WouldBlock()
        out = bytearray()
        wake_writer = False
        while self.slots and len(out) < n:
            slot = self.slots[0]
            take = min(n - len(out), len(slot.data))
            out += slot.data[:take]
            del slot.data[:take]
            slot.offset += take
            if slot.packet or not slot.data:
                wake_writer |= self.full
                del self.slots[0]            # an emptied page is released
            if slot.packet:
                break
        if wake_writer:                      # a page freed in a full pipe: room for writers
            self.wr_wait.wake(POLLOUT | POLLWRNORM)
        return bytes(out)

    def write_some(self, data: bytes, merge: bool = True, packet: bool = False) -> int:
        """Take what fits of `data` now; return how many bytes were taken (> 0), or 0 for empty
        data (even without a reader, as Linux does). Raise BrokenPipe with no reader, and
        WouldBlock when nothing fits. At most PIPE_BUF bytes are all taken or none.

        `merge` is True on the first attempt of a write(2) call; a blocking write that waited
        calls again with the rest and merge=False, as Linux's pipe_write tries the last slot
        only before its loop. `packet`: the writing end has O_DIRECT (pipe2(O_DIRECT) or
        F_SETFL): each new page is a packet. So a blocking write(2) handler does:
            done, first = 0, True          # both live while parked: save them with the process
            while done < len(data):
                try: done += pipe.write_some(data[done:], merge=first, packet=o_direct)
                except WouldBlock: park until writable(); a signal: return done (EINTR or a
                                   restart when done == 0)
                except BrokenPipe: send SIGPIPE; return done (EPIPE when done == 0)
                first = False              # after any attempt, as Linux merges before waiting
        """
        if not data:
            return 0
        try:
            return self._write_some(data, merge, packet)
        finally:  # every attempt with bytes wakes the readers' watchers (see the top)
            self.rd_wait.wake(POLLIN | POLLRDNORM)

    def _write_some(self, data: bytes, merge: bool, packet: bool) -> int:
        if self.readers == 0:
            raise BrokenPipe()
        taken = 0
        head = len(data) % PAGE_SIZE
        if merge and head and self.slots:
            last = self.slots[-1]
            if last.room() >= head:
                last.data += data[:head]
                taken = head
        while taken < len(data) and not self.full:
            chunk = data[taken:taken + PAGE_SIZE]
            self.slots.append(_Slot(0, chunk, packet))
            taken += len(chunk)
        if taken == 0:
            raise WouldBlock()
        return taken

    def write(self, data: bytes, nonblock: bool = False, packet: bool = False) -> int:
        """One write attempt, as one non-blocking write(2) behaves: the bytes taken (perhaps
        fewer than given). Nothing fits: SyscallError(EAGAIN) if nonblock, else WouldBlock.
        No reader: BrokenPipe (the handler sends SIGPIPE and fails with EPIPE)."""
        try:
            return self.write_some(data, packet=packet)
        except WouldBlock:
            if nonblock:
                raise SyscallError(E.EAGAIN, "pipe is full") from None
            raise

    # -- F_SETPIPE_SZ ------------------------------------------------------------------------

    def set_size(self, arg: int, privileged: bool = False, max_size: int = PIPE_MAX_SIZE) -> int:
        """fcntl(F_SETPIPE_SZ, arg) (fs/pipe.c pipe_set_size): round `arg` (an unsigned int) up
        to a power-of-two number of pages, return the new capacity in bytes. EINVAL above 2 GiB;
        EPERM when growing past `max_size` without CAP_SYS_RESOURCE; EBUSY when fewer slots than
        are in use (Linux counts slots, not bytes). The per-user page limits are the caller's."""
        arg &= 0xFFFFFFFF                    # pipe_fcntl takes the argument as an unsigned int
        size = round_size(arg)
        if size == 0:
            raise SyscallError(E.EINVAL, f"pipe size {arg} is above 2 GiB")
        pages = size // PAGE_SIZE
        if pages > self.pages and size > max_size and not privileged:
            raise SyscallError(E.EPERM, f"pipe size {size} is above pipe-max-size {max_size}")
        if pages < len(self.slots):
            raise SyscallError(E.EBUSY, f"pipe holds {len(self.slots)} pages, more than {pages}")
        self.pages = pages
        self.wr_wait.wake(0)                 # this may have made room for writers
        return size

    # -- checkpoint images -------------------------------------------------------------------

    def saved(self) -> dict:
        """A JSON-safe record: the capacity, the end counts and each slot's offset, bytes
        (base64) and packet flag; the slots themselves decide what the next writes can take."""
        return {"size": self.size, "readers": self.readers, "writers": self.writers,
                "slots": [[s.offset, base64.b64encode(bytes(s.data)).decode("ascii"), s.packet]
                          for s in self.slots]}

    @classmethod
    def load(cls, d) -> "Pipe":
        """A Pipe from saved(); ValueError with one clear line for anything Linux cannot hold."""
        if not isinstance(d, dict) or set(d) != SAVED_KEYS:
            raise ValueError(f"pipe record must have exactly the keys {sorted(SAVED_KEYS)}")
        size, readers, writers, slots = d["size"], d["readers"], d["writers"], d["slots"]
        for name, v in (("size", size), ("readers", readers), ("writers", writers)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"pipe {name} must be a non-negative integer, not {v!r}")
        if size < PAGE_SIZE or size > SIZE_LIMIT or size & (size - 1):
            raise ValueError(f"pipe size {size} is not a power-of-two number of pages "
                             f"between {PAGE_SIZE} and {SIZE_LIMIT}")
        pipe = cls(size, readers, writers)
        if not isinstance(slots, list):
            raise ValueError("pipe slots must be a list")
        if len(slots) > pipe.pages:
            raise ValueError(f"pipe buffers {len(slots)} pages, more than its {pipe.pages}")
        for i, slot in enumerate(slots):
            pipe.slots.append(_load_slot(i, slot))
        return pipe


def _load_slot(i: int, slot) -> _Slot:
    if not (isinstance(slot, list) and len(slot) == 3 and isinstance(slot[1], str)
            and isinstance(slot[0], int) and not isinstance(slot[0], bool)
            and isinstance(slot[2], bool)):
        raise ValueError(f"pipe slot {i} must be [offset, base64 bytes, packet flag]")
    offset, text, packet = slot
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"pipe slot {i} bytes are not base64") from None
    if not data:
        raise ValueError(f"pipe slot {i} is empty (Linux releases an emptied page)")
    if offset < 0 or offset + len(data) > PAGE_SIZE:
        raise ValueError(f"pipe slot {i} holds bytes {offset}..{offset + len(data)}, "
                         f"outside its {PAGE_SIZE}-byte page")
    return _Slot(offset, data, packet)

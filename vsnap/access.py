"""Who may do what to a file: the guest's credentials and Linux's permission rule for them.

The guest is an ordinary unprivileged user (uid and gid 1000, no capabilities, and no call can
make it anyone else). Every file in the sandbox appears to belong to it (stat reports its uid and
gid), so, as for a normal user working on their own files, the owner's three mode bits decide
each check: Linux looks at the owner class alone when the uid matches, even where the group or
other bits would allow more. vsnap applies this rule itself, whoever runs vsnap: a host root
would otherwise get past every check (CAP_DAC_OVERRIDE) and the guest with it.
"""
from __future__ import annotations

from dataclasses import dataclass

# the `want` bits of a check (Linux's MAY_EXEC, MAY_WRITE, MAY_READ), in the mode bits' order
MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4

S_ISUID, S_ISGID, S_IXGRP = 0o4000, 0o2000, 0o010


@dataclass(frozen=True)
class Credentials:
    """The guest's identity: real, effective, saved and file-system ids are all the same."""

    uid: int
    gid: int

    @property
    def groups(self) -> tuple[int, ...]:
        """Supplementary groups: the guest's own group only."""
        return (self.gid,)

    def in_group(self, gid: int) -> bool:
        return gid in self.groups

    def permits(self, mode: int, want: int) -> bool:
        """May the guest `want` (MAY_* bits) a file with this st_mode? (generic_permission)"""
        return (mode >> 6) & want == want


def privileges_dropped(mode: int) -> int:
    """The mode after a write, truncate or chown by an unprivileged user: Linux clears set-user-ID
    always and set-group-ID when group execute is set too (without it, S_ISGID marks mandatory
    locking, and the file's group is the guest's, so it stays). Directories keep both bits."""
    if mode & 0o170000 != 0o100000:  # regular files only
        return mode
    if mode & S_ISUID:
        mode &= ~S_ISUID
    if mode & S_ISGID and mode & S_IXGRP:
        mode &= ~S_ISGID
    return mode

"""Linux errno values (asm-generic/errno-base.h and errno.h) and their names."""

EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
ENOEXEC = 8
EBADF = 9
ECHILD = 10
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
EXDEV = 18
ENODEV = 19
ENOTDIR = 20
EISDIR = 21
EINVAL = 22
ENFILE = 23
EMFILE = 24
ENOTTY = 25
ETXTBSY = 26
EFBIG = 27
ENOSPC = 28
ESPIPE = 29
EROFS = 30
EMLINK = 31
EPIPE = 32
EDOM = 33
ERANGE = 34
EDEADLK = 35
ENAMETOOLONG = 36
ENOSYS = 38
ENOTEMPTY = 39
ELOOP = 40
ENODATA = 61
ENOPKG = 65
EOVERFLOW = 75
EBADFD = 77
ENOTSOCK = 88
EOPNOTSUPP = 95
ETIMEDOUT = 110

NAMES = {value: name for name, value in dict(globals()).items()
         if name.startswith("E") and isinstance(value, int)}


def name(number: int) -> str:
    """'ENOENT' for 2; 'E123' for a number this table does not know."""
    return NAMES.get(number, f"E{number}")

/* vsnap's checkpoints from inside the guest, as DragonFly BSD's <sys/checkpoint.h> declares
 * them (sys_checkpoint(2), checkpt(1)).
 *
 *   int sys_checkpoint(int type, int fd, pid_t pid, int retval);
 *
 * CKPT_FREEZE writes a checkpoint of the calling process to `fd` (a regular file open for
 * writing), or, when fd and pid are both -1, to the checkpoint template (%N.ckpt in the
 * current directory, %N the program's name; `vsnap run --ckptfile TEMPLATE` changes it). pid
 * is -1 or the caller's own. It returns 0 to the caller; when the image is resumed
 * (`vsnap resume IMAGE --retval N`, or CKPT_THAW below) the same call returns N (1 unless
 * said otherwise), so a program can tell a resume from its first run and rebuild what was
 * not saved. The file it was written to is still open on `fd` after a resume.
 *
 * CKPT_THAW replaces the calling process with the checkpoint read from `fd`, like exec; in
 * the resumed program, the sys_checkpoint call that made it returns `retval`.
 *
 * The image is an ordinary vsnap image: `vsnap resume`, `inspect` and `diff` read it.
 *
 * Natively, on Linux, there is no such system call: sys_checkpoint fails with ENOSYS (the
 * number below is vsnap's own, far above Linux's table, which ends near 460).
 *
 * The signals: SIGCKPT asks a process to checkpoint itself and go on (its default action:
 * checkpoint to the template, continue), SIGCKPTEXIT to checkpoint and exit. A program that
 * installs a handler for either gets only its handler. Linux has no such signals; vsnap uses
 * SIGRTMAX-2 (62) and SIGRTMAX-1 (63): numbers 32-34 are taken by glibc and musl for their
 * own use (thread cancellation, set*id, timers) and SIGRTMIN itself differs between them (34
 * in glibc, 35 in musl), so the top of the real-time range is the part neither reserves. A
 * program that uses SIGRTMAX-2 or SIGRTMAX-1 for its own purposes would collide with them.
 */
#ifndef VSNAP_CHECKPOINT_H
#define VSNAP_CHECKPOINT_H

#include <sys/types.h>
#include <unistd.h>
#include <sys/syscall.h>

#define VSNAP_SYS_CHECKPOINT 19280

#define CKPT_FREEZE 0x1
#define CKPT_THAW   0x2

#define SIGCKPT     62
#define SIGCKPTEXIT 63

static inline int sys_checkpoint(int type, int fd, pid_t pid, int retval)
{
    return (int)syscall(VSNAP_SYS_CHECKPOINT, type, fd, pid, retval);
}

#endif

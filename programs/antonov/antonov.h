/* antonov.h: a process that checkpoints itself, the way Vadim Antonov described it in 1990
 * (comp.unix.questions, "Restarting a process after a shutdown"; seeds/002 in this project).
 *
 * The program installs a signal handler with antonov_init().  When the signal comes, the
 * handler writes the open files, the stack, the data segment and the heap into a save file,
 * does setjmp, writes the jmp_buf, and exits.  Run again, the program calls antonov_restart()
 * first thing in main: if the save file is there, the stack and the data segment are read
 * back, the registers come back from the jmp_buf, and the program carries on inside the
 * signal handler of the process that saved itself, which reopens its files, redraws its
 * screen and returns to whatever the program was doing when the signal came.
 *
 * Rules for a program that uses it (see README.md):
 *   - static, non-PIE, and on Linux run with address randomisation off (setarch -R), so the
 *     stack, the data segment and the heap are at the same addresses in every run;
 *   - open files it wants back through antonov_open / antonov_creat (they remember names);
 *   - keep its heap in brk memory (antonov_sbrk) or in static buffers: mmap'd memory is not
 *     saved (musl's malloc uses mmap, so a musl program must not keep state in malloc'd
 *     memory; glibc's malloc uses brk for small blocks, which is saved).
 */
#ifndef ANTONOV_H
#define ANTONOV_H

/* flags for antonov_init */
#define ANTONOV_KEEP_SAVE 1   /* keep the save file after a restore (default: remove it) */
#define ANTONOV_VERBOSE   2   /* describe the layout and the fd table on stderr */

/* Install the checkpoint handler for SIGUSR1.  `save_path` is the save file (relative paths
 * are relative to the current directory, which a restarted process must share); `reinit` is
 * called after a restore, in the handler, to redraw the screen (may be NULL).  0 or -1. */
int antonov_init(const char *save_path, void (*reinit)(void), int flags);

/* The special branch for main.  No save file: returns 0, run as usual.  A good save file:
 * does not return (the saved process continues).  A save file that cannot be used (other
 * binary, other addresses, a file that changed): says why on stderr and returns -1. */
int antonov_restart(void);

/* open/creat/close that remember the names, so that a restore can reopen the files. */
int antonov_open(const char *path, int flags, ...);
int antonov_creat(const char *path, int mode);
int antonov_close(int fd);

/* Move the program break (sbrk works in glibc; musl's refuses increments). */
void *antonov_sbrk(long increment);

#endif

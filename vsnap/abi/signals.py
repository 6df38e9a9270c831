"""Linux x86-64 signal numbers and what a shell prints when a process dies of one."""

NUMBERS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
           "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
           "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17,
           "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22,
           "SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27,
           "SIGWINCH": 28, "SIGIO": 29, "SIGPWR": 30, "SIGSYS": 31,
           # DragonFly's checkpoint signals, at SIGRTMAX-2 and SIGRTMAX-1 (<vsnap/checkpoint.h>
           # says why there): Linux names these two only as real-time signals
           "SIGCKPT": 62, "SIGCKPTEXIT": 63}
NAMES = {n: s for s, n in NUMBERS.items()}

# what strsignal(3) says, which is what a shell prints when a process dies of one
DESCRIPTIONS = {
    "SIGHUP": "Hangup", "SIGINT": "Interrupt", "SIGQUIT": "Quit",
    "SIGILL": "Illegal instruction", "SIGTRAP": "Trace/breakpoint trap", "SIGABRT": "Aborted",
    "SIGBUS": "Bus error", "SIGFPE": "Floating point exception", "SIGKILL": "Killed",
    "SIGUSR1": "User defined signal 1", "SIGSEGV": "Segmentation fault",
    "SIGUSR2": "User defined signal 2", "SIGPIPE": "Broken pipe", "SIGALRM": "Alarm clock",
    "SIGTERM": "Terminated", "SIGSTKFLT": "Stack fault", "SIGCHLD": "Child exited",
    "SIGCONT": "Continued", "SIGSTOP": "Stopped (signal)", "SIGTSTP": "Stopped",
    "SIGTTIN": "Stopped (tty input)", "SIGTTOU": "Stopped (tty output)",
    "SIGURG": "Urgent I/O condition", "SIGXCPU": "CPU time limit exceeded",
    "SIGXFSZ": "File size limit exceeded", "SIGVTALRM": "Virtual timer expired",
    "SIGPROF": "Profiling timer expired", "SIGWINCH": "Window changed",
    "SIGIO": "I/O possible", "SIGPWR": "Power failure", "SIGSYS": "Bad system call",
    "SIGCKPT": "Checkpoint (Real-time signal 28 on Linux)",
    "SIGCKPTEXIT": "Checkpoint and exit (Real-time signal 29 on Linux)",
}


def status_of(signal: str) -> int:
    """The exit status a shell reports for a process killed by `signal` (128 + number)."""
    return 128 + NUMBERS[signal]
